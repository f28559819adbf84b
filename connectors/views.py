"""The end user's pages: sign-up, log in and out, accounts list, connect, callback, disconnect.

Thin: each view calls one function of ``flow`` or ``accounts`` and turns the
typed errors it raises into a page or a message.
"""

import logging

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import UserCreationForm
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.backends.utils import csrf_input
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from backoffice.throttles import signup_wait, throttled_response

from .accounts import account_disconnect, accounts_of
from .breaker import pause_notices
from .config import config_keys_set, config_versions
from .exceptions import (
    AccessDenied,
    EventRefused,
    FlowError,
    NotConfigured,
    ProviderError,
    RateLimited,
    StateMismatch,
    UnknownConnector,
)
from .events import event_headers_check, event_length_check, event_take
from .servers import server_channels, server_test_message
from .flow import flow_finish, flow_start
from .middleware import busy_response
from .models import AccountServer, ConnectedAccount
from .registry import registry

logger = logging.getLogger("connectors.flow")


def _connector(provider):
    try:
        return registry.by_provider(provider)
    except UnknownConnector:
        raise Http404("No such provider.") from None


def _on_site(request, url):
    """``url`` when it stays on this site, else None."""
    if url and url_has_allowed_host_and_scheme(
        url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return url
    return None


class LoginView(auth_views.LoginView):
    """Django's, linking to the sign-up page when SIGNUP_ENABLED is on."""

    def get_context_data(self, **kwargs):
        return {**super().get_context_data(**kwargs), "signup_enabled": settings.SIGNUP_ENABLED}


class LogoutView(auth_views.LogoutView):
    """Django's, and the login page it leads to says so."""

    def post(self, request, *args, **kwargs):
        response = super().post(request, *args, **kwargs)
        messages.info(request, "You are signed out.")
        return response


@sensitive_post_parameters("password1", "password2")
@require_http_methods(["GET", "POST"])
def signup(request):
    """Django's UserCreationForm, when the operator turned SIGNUP_ENABLED on.

    Every POST counts against the client address's SIGNUP_RATE; past it, our
    429 page and nothing is created (backoffice.throttles).
    """
    if not settings.SIGNUP_ENABLED:
        raise Http404("Sign-up is off.")
    if request.user.is_authenticated:
        return redirect("accounts")
    if request.method == "POST":
        wait = signup_wait(request)
        if wait is not None:
            return throttled_response(request, wait)
    form = UserCreationForm(request.POST if request.method == "POST" else None)
    if form.is_valid():
        user = form.save()
        # Named, since axes's backend comes first and no password was checked here.
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        messages.success(request, f"Welcome, {user.get_username()}: you are signed in.")
        return redirect("accounts")
    return render(request, "registration/signup.html", {"form": form})


def _ready(connector, versions):
    """Whether the flow's keys are stored: read without decrypting any."""
    return set(connector.flow_keys) <= config_keys_set(connector.service_id, versions)


@login_required
@require_GET
def accounts(request):
    connectors = list(registry)
    versions = config_versions()
    return render(
        request,
        "connectors/accounts.html",
        {
            "accounts": accounts_of(request.user),
            "connectors": connectors,
            "ready": {c.provider for c in connectors if _ready(c, versions)},
            "notices": pause_notices(),
            # One masked token for every form of the page, not one made per form.
            "csrf_input": csrf_input(request),
        },
    )


@login_required
@require_GET
def connect(request, provider):
    connector = _connector(provider)
    next_url = _on_site(request, request.GET.get("next"))
    try:
        url = flow_start(request.session, connector=connector, next_url=next_url)
    except NotConfigured as error:
        return _not_configured(request, connector, error)
    logger.info("flow started: %s for user %s", connector.name, request.user.pk)
    return redirect(url)


@login_required
@require_GET
def callback(request, provider):
    connector = _connector(provider)
    try:
        result, next_url = flow_finish(
            request.session, user=request.user, connector=connector, params=request.GET.dict()
        )
    except AccessDenied as error:
        logger.info("flow denied: %s by user %s", connector.name, request.user.pk)
        return _flow_page(request, connector, error, title="Nothing was connected", status=200)
    except FlowError as error:
        logger.warning("flow refused for user %s: %s", request.user.pk, error)
        return _flow_page(
            request,
            connector,
            error,
            title="This link cannot be used",
            status=400,
            # Most often the consent sent again after it succeeded: say what holds.
            connected=_connected(request.user, connector) if isinstance(error, StateMismatch) else None,
        )
    except RateLimited as error:
        logger.warning("flow failed for user %s: %s", request.user.pk, error)
        return busy_response(request, error, connector=connector)
    except NotConfigured as error:
        return _not_configured(request, connector, error)
    except ProviderError as error:
        logger.warning("flow failed for user %s: %s", request.user.pk, error)
        return _flow_page(
            request, connector, error, title=f"{connector.name} could not connect", status=502
        )
    _say_connected(request, connector, result)
    return redirect(_on_site(request, next_url) or reverse("accounts"))


def _say_connected(request, connector, result):
    account, server = result.account, result.server
    name = account.display_name or account.username
    if server is not None:
        messages.success(
            request,
            f"Connected {connector.name} account {name}; {connector.bot_noun} was added to "
            f"{server.name or server.server_id}.",
        )
    elif connector.expects_server:
        messages.warning(
            request,
            f"Connected {connector.name} account {name}, but {connector.bot_noun} was not added "
            f"to a {connector.server_noun}.",
        )
    else:
        messages.success(request, f"Connected {connector.name} account {name}.")


def _flow_page(request, connector, error, *, title, status, connected=None):
    return render(
        request,
        "connectors/flow_result.html",
        {"connector": connector, "title": title, "message": str(error), "connected": connected},
        status=status,
    )


def _connected(user, connector):
    """The user's newest account of this connector, if any."""
    return (
        ConnectedAccount.objects.filter(user=user, service_id=connector.service_id)
        .defer("access_token", "refresh_token")
        .first()
    )


def _not_configured(request, connector, error):
    """Our 503 page for the person; which keys are missing goes to the log, for the operator."""
    logger.warning("flow refused for user %s: %s", request.user.pk, error)
    return render(request, "connectors/not_configured.html", {"connector": connector}, status=503)


@login_required
@require_POST
def disconnect(request, pk):
    account = get_object_or_404(ConnectedAccount, pk=pk, user=request.user)
    connector = account.connector
    name = account.display_name or account.username or account.uid
    if account_disconnect(account=account, connector=connector):
        messages.success(request, f"Disconnected {name}; {connector.name} revoked the access.")
    else:
        messages.warning(
            request,
            f"Disconnected {name} here, but {connector.name} did not confirm that the access "
            f"was revoked: {connector.revoke_hint}.",
        )
    return redirect("accounts")


@csrf_exempt
@require_POST
def events(request, provider):
    """The provider's events: 204 once verified and acted on, 401 for anything not proven.

    The signature headers' shapes and the Content-Length are read strictly
    before the body is read, so that nothing a caller writes there is a 500.
    """
    connector = _connector(provider)
    if not connector.accepts_events:
        raise Http404("This provider sends no events here.")
    try:
        event_headers_check(connector, request.headers)
        event_length_check(request.META.get("CONTENT_LENGTH"))
        event_take(connector=connector, headers=request.headers, body=request.body)
    except EventRefused as error:
        logger.warning("%s event refused: %s", connector.name, error)
        return HttpResponse(status=401)
    return HttpResponse(status=204)


@login_required
@require_http_methods(["GET", "POST"])
def server_message(request, pk, server_id):
    """Prove the app can act in a server: GET lists where it can post, POST sends a short message.

    The provider is asked only here, never while the accounts page renders.
    """
    server = get_object_or_404(
        AccountServer.objects.select_related("account"),
        account__pk=pk, account__user=request.user, server_id=server_id,
    )
    connector = server.account.connector
    if not connector.can_message:
        raise Http404("This connector sends no messages.")
    where = server.name or server.server_id
    try:
        if request.method == "GET":
            channels = server_channels(server)
            return render(request, "connectors/test_message.html",
                          {"server": server, "connector": connector, "channels": channels})
        channel = request.POST.get("channel", "").strip()[:100] or None
        channel_id, name = server_test_message(server, user=request.user, channel_id=channel)
    except RateLimited as error:
        return busy_response(request, error, connector=connector)
    except ProviderError as error:
        messages.error(request, f"No test message was sent to {where}: {error}")
        return redirect("accounts")
    messages.success(request, f"Sent a test message to #{name} in {where}.")
    return redirect("accounts")
