"""The endpoints: thin, each a call into the connector framework and a JSON answer."""

import logging

from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db.models import Prefetch
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import APIView

from connectors.cache import CACHE_ERRORS, forget_broken_connections
from connectors.exceptions import ServiceUnavailable
from connectors.models import AccountServer, ConnectedAccount
from connectors.tokens import fresh_access_token

from .serializers import (
    AccountListSerializer,
    AccountQuerySerializer,
    ErrorSerializer,
    HealthSerializer,
    TokenSerializer,
)

# Every token handed out is on record here: the key, the account, the time.
logger = logging.getLogger("api.tokens")
health_logger = logging.getLogger("api.health")



def error(description):
    return OpenApiResponse(ErrorSerializer, description=description)


# What any endpoint may answer besides its own success (and its 503, which
# each names: our side, and for tokens also the provider).
COMMON_ERRORS = {
    401: error(
        "The key is missing (not_authenticated), or wrong, malformed or revoked (invalid_key); "
        "WWW-Authenticate names the scheme."
    ),
    403: error("The key lacks the scope tokens:read (missing_scope)."),
    405: error("The endpoint does not take this method (method_not_allowed); Allow names those it takes."),
    429: error(
        "Throttled (throttled): the key made more calls than API_THROTTLE_RATE allows, or the caller's address "
        "presented more refused keys than API_AUTH_FAILURE_RATE allows; Retry-After says when to go on."
    ),
    500: error("A fault of ours that no other answer names (server_error); the operator's log says what."),
}
OURS_UNAVAILABLE = error(
    "Our own side cannot serve the call: the database or the shared cache cannot be reached "
    "(service_unavailable); nothing was done. Retry-After says when to try again."
)

# The headers that come with a status, wherever it is answered (add_response_headers).
RETRY_AFTER = {
    "description": "Seconds to wait before calling again.",
    "required": True,
    "schema": {"type": "integer", "minimum": 1},
}
RESPONSE_HEADERS = {
    "401": {
        "WWW-Authenticate": {
            "description": 'The scheme the API takes: Bearer realm="api".',
            "required": True,
            "schema": {"type": "string"},
        },
    },
    "405": {
        "Allow": {
            "description": "The methods the endpoint takes.",
            "required": True,
            "schema": {"type": "string"},
        },
    },
    "429": {"Retry-After": RETRY_AFTER},
    "503": {"Retry-After": RETRY_AFTER},
}


def add_response_headers(result, generator, request, public):
    """drf-spectacular's postprocessing hook: every answer of a status above, in every operation, declares its headers."""
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            for status, response in operation.get("responses", {}).items():
                for name, header in RESPONSE_HEADERS.get(status, {}).items():
                    response.setdefault("headers", {}).setdefault(name, header)
    return result


class HealthView(APIView):
    # The API answers, the key works (its check reads the database), and the
    # shared cache, which the pace and the breaker need, answers: one read of a
    # key never written. While it fails, 503 service_unavailable with
    # Retry-After. (A comment, not a docstring: drf-spectacular would publish it.)
    CACHE_KEY = "api:health"

    @extend_schema(
        operation_id="health",
        summary="Whether the API answers, and to which key",
        responses={
            200: HealthSerializer,
            503: OURS_UNAVAILABLE,
            **COMMON_ERRORS,
        },
    )
    def get(self, request):
        try:
            cache.get(self.CACHE_KEY)
        except CACHE_ERRORS as failure:
            health_logger.warning("health: the shared cache failed (%s); answered 503", type(failure).__name__)
            forget_broken_connections()
            raise ServiceUnavailable("The service cannot reach its shared cache at the moment.") from None
        return Response({"status": "ok", "key": request.auth.name})


class AccountsView(APIView):
    @extend_schema(
        operation_id="accounts_list",
        summary="A user's connected accounts, without their tokens",
        parameters=[AccountQuerySerializer],
        responses={
            200: AccountListSerializer,
            400: error("No user given, or a service id no connector has (invalid_request)."),
            404: error("No user has that username (not_found)."),
            503: OURS_UNAVAILABLE,
            **COMMON_ERRORS,
        },
    )
    def get(self, request):
        # A plain dict, not the QueryDict: Django REST framework would take an empty service= for none given.
        query = AccountQuerySerializer(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        username, service = query.validated_data["user"], query.validated_data.get("service")
        user = get_user_model().objects.filter(username=username).only("pk").first()
        if user is None:
            raise exceptions.NotFound(f"No user is named {username!r}.")
        accounts = (
            ConnectedAccount.objects.filter(user=user)
            # Never read a token column: a list has no use for one, and each would be decrypted.
            .only("pk", "service_id", "uid", "username", "status", "scopes", "expires_at")
            .prefetch_related(
                Prefetch("servers", queryset=AccountServer.objects.only("account", "server_id", "name", "permissions"))
            )
        )
        if service is not None:
            # A registered connector's: the serializer refuses any other.
            accounts = accounts.filter(service_id=service)
        return Response(AccountListSerializer({"accounts": accounts}).data)


# Account ids are the database's 64-bit integers: a larger number names no
# account (and would overflow the query), so it is a 404 like any unknown id.
ACCOUNT_ID_MAX = 2**63 - 1


class AccountTokenView(APIView):
    @extend_schema(
        operation_id="account_token",
        summary="A valid access token for the account, refreshed first when it is near expiry",
        request=None,
        responses={
            200: TokenSerializer,
            404: error("No account has that id (not_found)."),
            409: error("Only the user can renew the grant: they must reconnect the account (code needs_reconnect)."),
            502: error(
                "The provider refused the refresh for a reason that is neither a revoked grant nor its own "
                "outage (provider_error); the account is unchanged."
            ),
            503: error(
                "The provider timed out, failed, rate limited us, or refreshes are paused after its faults "
                "(provider_unavailable); our own side failed: the database or the shared cache cannot be reached, "
                "the provider refused our client credentials, or the account is being checked after a mass "
                "refusal and needs a refresh, Retry-After 600 (service_unavailable); or no key decrypts the "
                "stored configuration (configuration_unreadable). Retry-After says when to try again."
            ),
            **COMMON_ERRORS,
        },
        parameters=[
            OpenApiParameter(
                "account_id",
                {"type": "integer", "format": "int64", "minimum": 1, "maximum": ACCOUNT_ID_MAX, "example": 7},
                OpenApiParameter.PATH,
                description="The account's id.",
            ),
            OpenApiParameter(
                "Cache-Control",
                str,
                OpenApiParameter.HEADER,
                required=True,
                enum=["no-store"],
                response=[200],
                description="A token is never to be kept by a cache (every answer of this endpoint says so).",
            ),
        ],
    )
    def post(self, request, account_id):
        if account_id > ACCOUNT_ID_MAX:
            raise exceptions.NotFound("No such account.")
        # fresh_access_token reads the row itself and fills in the rest of the grant.
        account = ConnectedAccount(pk=account_id)
        access_token = fresh_access_token(account)
        logger.info(
            "access token of account %s handed to service key %r at %s",
            account_id, request.auth.name, timezone.now().isoformat(timespec="seconds"),
        )
        return Response(
            {
                "access_token": access_token,
                "token_type": account.token_type,
                "expires_at": account.expires_at,
                "scopes": account.scope_list,
            }
        )

    def finalize_response(self, request, response, *args, **kwargs):
        """Every answer, the token's and the errors', is marked never to be stored (RFC 6749 5.1)."""
        response = super().finalize_response(request, response, *args, **kwargs)
        response["Cache-Control"] = "no-store"
        return response
