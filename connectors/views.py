"""The end user's pages: accounts list, connect, callback, disconnect.

Thin: each view calls one function of ``flow`` or ``accounts`` and turns the
typed errors it raises into a page or a message.
"""

import logging

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from .accounts import account_disconnect
from .breaker import pause_notices
from .exceptions import (
    AccessDenied,
    FlowError,
    NotConfigured,
    ProviderError,
    RateLimited,
    UnknownConnector,
)
from .flow import flow_finish, flow_start
from .middleware import busy_response
from .models import ConnectedAccount
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


@login_required
@require_GET
def accounts(request):
    connected = (
        ConnectedAccount.objects.filter(user=request.user)
        .defer("access_token", "refresh_token")
        .prefetch_related("servers")
    )
    return render(
        request,
        "connectors/accounts.html",
        {"accounts": connected, "connectors": list(registry), "notices": pause_notices()},
    )


@login_required
@require_GET
def connect(request, provider):
    connector = _connector(provider)
    next_url = _on_site(request, request.GET.get("next"))
    try:
        url = flow_start(request.session, connector=connector, next_url=next_url)
    except NotConfigured as error:
        return render(
            request,
            "connectors/not_configured.html",
            {"connector": connector, "message": str(error)},
            status=503,
        )
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
        return _flow_page(request, connector, error, title="This link cannot be used", status=400)
    except RateLimited as error:
        logger.warning("flow failed for user %s: %s", request.user.pk, error)
        return busy_response(request, error, connector=connector)
    except (ProviderError, NotConfigured) as error:
        logger.warning("flow failed for user %s: %s", request.user.pk, error)
        return _flow_page(
            request, connector, error, title=f"{connector.name} could not connect", status=502
        )
    account = result.account
    name = account.display_name or account.username
    if result.server is not None:
        messages.success(
            request,
            f"Connected {connector.name} account {name}; the bot was added to {result.server.name or result.server.server_id}.",
        )
    else:
        messages.warning(
            request,
            f"Connected {connector.name} account {name}, but the bot was not added to a server.",
        )
    return redirect(_on_site(request, next_url) or reverse("accounts"))


def _flow_page(request, connector, error, *, title, status):
    return render(
        request,
        "connectors/flow_result.html",
        {"connector": connector, "title": title, "message": str(error)},
        status=status,
    )


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
            f"Disconnected {name} here, but revoking the access at {connector.name} failed: "
            f"remove the app under {connector.name}'s Authorized Apps settings.",
        )
    return redirect("accounts")
