"""Every error the API answers is JSON ``{"code", "message"}``; typed errors become it here, at the edge.

The connector framework's messages are safe to show (they name the
provider, never a token); Django REST framework's own errors keep their
status and headers (``WWW-Authenticate``, ``Retry-After``).
"""

import logging
import math

from django.core.exceptions import ObjectDoesNotExist
from django.http import Http404, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from connectors.cache import CACHE_ERRORS
from connectors.checks import UNREADABLE_MESSAGE
from connectors.exceptions import (
    CircuitOpen,
    ConnectorError,
    CredentialsRefused,
    EncryptionKeyError,
    NeedsReconnect,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    ServiceUnavailable,
)

logger = logging.getLogger("api")

# When the provider failed without saying when to come back (a timeout, a
# 5xx): as long as the refresh breaker's default cool-down. Also what a
# configuration no key decrypts answers: only the operator can mend it, yet
# every 503 says when to look again.
DEFAULT_RETRY_AFTER = 60

# Django REST framework's codes for its own errors, named as ours are.
DRF_CODES = {
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.AuthenticationFailed: "invalid_key",
    exceptions.PermissionDenied: "missing_scope",
    exceptions.Throttled: "throttled",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotFound: "not_found",
    exceptions.ParseError: "invalid_request",
    exceptions.ValidationError: "invalid_request",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.NotAcceptable: "not_acceptable",
}


def error_body(code, message):
    return {"code": code, "message": message}


def api_exception_handler(exc, context):
    """Django REST framework's EXCEPTION_HANDLER: None lets Django report the unexpected as a 500."""
    if isinstance(exc, NeedsReconnect):
        return Response(error_body("needs_reconnect", str(exc)), status=status.HTTP_409_CONFLICT)
    if isinstance(exc, ProviderUnavailable):
        return _unavailable(exc)
    if isinstance(exc, EncryptionKeyError):
        logger.error("connectors.E001: %s", UNREADABLE_MESSAGE)
        return Response(
            error_body("configuration_unreadable", "The service cannot read its stored configuration."),
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": str(DEFAULT_RETRY_AFTER)},
        )
    if isinstance(exc, CredentialsRefused):
        # The service's own configuration, not the caller's grant: the operator must act.
        return _ours(f"{exc} The operator has been told; the account is unchanged.")
    if isinstance(exc, ProviderError):
        return Response(error_body("provider_error", str(exc)), status=status.HTTP_502_BAD_GATEWAY)
    if isinstance(exc, ServiceUnavailable):
        return _ours(str(exc), exc.retry_after)
    if isinstance(exc, CACHE_ERRORS):
        logger.error("our own infrastructure failed during an API call (%s)", type(exc).__name__)
        return _ours("The service cannot reach its database or cache at the moment; nothing was done.")
    if isinstance(exc, ConnectorError):
        # The connector lacks a value: nothing the caller did, nothing it can fix.
        return _ours(str(exc))
    if isinstance(exc, ObjectDoesNotExist):
        exc = exceptions.NotFound("No such account.")
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    code = next((name for kind, name in DRF_CODES.items() if isinstance(exc, kind)), "error")
    response.data = error_body(code, _message(exc, response.data))
    return response


def _unavailable(error):
    retry_after = getattr(error, "retry_after", None) if isinstance(error, (RateLimited, CircuitOpen)) else None
    wait = DEFAULT_RETRY_AFTER if retry_after is None else max(1, math.ceil(retry_after))
    response = Response(error_body("provider_unavailable", str(error)), status=status.HTTP_503_SERVICE_UNAVAILABLE)
    response["Retry-After"] = str(wait)
    return response


def _ours(message, retry_after=ServiceUnavailable.DEFAULT_RETRY_AFTER):
    """Our own failure (cache, database, configuration), never reported as the provider's.

    CACHE_ERRORS holds the database's errors too: the database cache raises them.
    """
    response = Response(error_body("service_unavailable", message), status=status.HTTP_503_SERVICE_UNAVAILABLE)
    response["Retry-After"] = str(max(1, math.ceil(retry_after)))
    return response


def _message(exc, data):
    """One sentence from Django REST framework's detail, which may be a dict of field errors."""
    if isinstance(exc, Http404):
        return "Not found."
    if isinstance(data, dict) and set(data) == {"detail"}:
        return str(data["detail"])
    if isinstance(data, dict):
        return "; ".join(f"{field}: {' '.join(map(str, errors))}" for field, errors in data.items())
    return str(data)


@csrf_exempt
def not_found(request, *args, **kwargs):
    """Any other address under /api/, any method: a JSON 404, never a redirect to the address with a slash.

    Exempt from CSRF like the API's views: the API takes no cookie, so a POST
    there is a 404 like a GET, never Django's 403 page about an expired form.
    """
    return JsonResponse(error_body("not_found", "No such endpoint."), status=404)


def bad_request(request, exception):
    """Django's 400 answer (a Host not allowed, too many fields): JSON under /api/, the site's page elsewhere."""
    if request.path.startswith("/api/"):
        return JsonResponse(error_body("invalid_request", "The request could not be read."), status=400)
    from django.views.defaults import bad_request as page

    return page(request, exception)


def server_error(request):
    """Django's 500 answer (DEBUG off): JSON under /api/, the site's page elsewhere."""
    if request.path.startswith("/api/"):
        return JsonResponse(error_body("server_error", "The service failed; the operator's log says why."), status=500)
    from django.views.defaults import server_error as page

    return page(request)
