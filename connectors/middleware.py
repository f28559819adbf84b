"""What every web request shares: a bound on waiting for a provider, our pages for what
cannot be helped (a rate limit, an unreadable configuration, a wrong method), and the
Content-Security-Policy and Permissions-Policy headers."""

import logging
from urllib.parse import urlsplit

from csp.middleware import CSPMiddleware
from django.conf import settings
from django.db import DatabaseError
from django.http import HttpResponse
from django.shortcuts import render

from .cache import CACHE_ERRORS, UNREACHABLE
from .checks import UNREADABLE_MESSAGE
from .exceptions import EncryptionKeyError, RateLimited, ServiceUnavailable, UnknownConnector
from .ratelimit import waits_within
from .registry import registry

logger = logging.getLogger("connectors.config")


class BoundedWaits:
    """Waits for a provider inside a request end within REQUEST_MAX_WAIT seconds.

    Past that the person gets our page saying the provider is busy and when
    to try again (503 with Retry-After), long before a worker timeout would
    answer with a bare 502. Commands and sweeps, outside any request, may
    wait longer.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        with waits_within(settings.REQUEST_MAX_WAIT):
            return self.get_response(request)

    def process_exception(self, request, exception):
        if isinstance(exception, RateLimited):
            return busy_response(request, exception)
        return None


def busy_response(request, error, *, connector=None):
    """Our 503 page for a rate limit, with the wait it asks for."""
    wait = max(1, round(error.retry_after)) if error.retry_after is not None else 60
    response = render(
        request, "connectors/busy.html", {"connector": connector, "wait": wait}, status=503
    )
    response["Retry-After"] = str(wait)
    return response


class UnreadableConfiguration:
    """A stored value no key decrypts: our 503 page and connectors.E001 in the log, never a 500.

    The person is told the site cannot use its stored configuration right
    now; what to do about it (the key) goes to the log, for the operator.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not isinstance(exception, EncryptionKeyError):
            return None
        logger.error("connectors.E001: %s (%s)", UNREADABLE_MESSAGE, request.path)
        return render(request, "connectors/unreadable.html", status=503)


class OwnFaults:
    """Our own cache or database failing: our 503 page with Retry-After, never a 500.

    The person hears that this site, not the provider, is at fault, and
    that nothing was done; the log says what failed, for the operator.
    """

    DATABASE_MESSAGE = "This site cannot reach its database at the moment, so nothing was done."

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        wait = ServiceUnavailable.DEFAULT_RETRY_AFTER
        if isinstance(exception, ServiceUnavailable):
            message, wait = str(exception), exception.retry_after
        elif isinstance(exception, DatabaseError):
            message = self.DATABASE_MESSAGE
        elif isinstance(exception, CACHE_ERRORS):
            message = UNREACHABLE
        else:
            return None
        logger.error("%s %s: answered 503, our own side could not serve it (%s)", request.method, request.path,
                     type(exception).__name__)
        wait = max(1, round(wait))
        try:
            # The page asks for the user, whose session lives in the database that may be down.
            response = render(request, "connectors/outage.html",
                              {"message": message, "wait": wait, "connector": _page_connector(request)}, status=503)
        except DatabaseError:
            response = HttpResponse(f"{message} Please try again in {wait} seconds.", status=503,
                                    content_type="text/plain; charset=utf-8")
        response["Retry-After"] = str(wait)
        return response


def _page_connector(request):
    """The connector whose page failed (/auth/<provider>/...), to say it is not at fault; else None."""
    match = getattr(request, "resolver_match", None)
    provider = match.kwargs.get("provider") if match is not None else None
    try:
        return registry.by_provider(provider) if provider else None
    except UnknownConnector:
        return None


class NotAllowedPage:
    """Our 405 page where Django answers a wrong method with an empty body
    (require_POST: a GET on a Disconnect address), the Allow header kept."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if response.status_code != 405 or response.streaming or response.content:
            return response
        page = render(request, "405.html", status=405)
        page["Allow"] = response.get("Allow", "")
        return page


# Powerful browser features no page of ours uses: none may use them, not even
# our own pages (the empty allowlist), nor anything they might frame.
DENIED_FEATURES = (
    "accelerometer", "autoplay", "camera", "display-capture",
    "geolocation", "gyroscope", "hid", "magnetometer", "microphone", "midi",
    "payment", "screen-wake-lock", "serial", "usb", "xr-spatial-tracking",
)
PERMISSIONS_POLICY = ", ".join(f"{feature}=()" for feature in DENIED_FEATURES)


class PermissionsPolicy:
    """Every response says which powerful features the browser must refuse."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        response.setdefault("Permissions-Policy", PERMISSIONS_POLICY)
        return response


class ContentSecurityPolicy(CSPMiddleware):
    """django-csp's CONTENT_SECURITY_POLICY, whose form-action also allows each
    connector's consent page, and img-src the origins its avatars come from.

    A form of ours can end there: logging in on the way to Connect account
    posts the login form, which redirects to /auth/<provider>/connect, which
    redirects to the provider's authorize URL; Chromium holds every step of a
    form's redirects to form-action and blocks the last one otherwise. Read
    for each response, so it follows the settings (the local stand-in too).
    """

    def get_policy_parts(self, request, response, report_only=False):
        parts = super().get_policy_parts(request, response, report_only)
        if not report_only:
            update = dict(parts.update or {})
            update["form-action"] = [*update.get("form-action", ()), *_consent_origins()]
            update["img-src"] = [*update.get("img-src", ()), *_image_origins()]
            parts.update = update
        return parts


def _consent_origins():
    urls = (urlsplit(connector.authorize_url) for connector in registry)
    return sorted({f"{url.scheme}://{url.netloc}" for url in urls})


def _image_origins():
    return sorted({origin for connector in registry for origin in connector.image_origins()})
