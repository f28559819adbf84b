"""The endpoints: thin, each a call into the connector framework and a JSON answer."""

import logging

from django.contrib.auth import get_user_model
from django.db.models import Prefetch
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import APIView

from connectors.exceptions import UnknownConnector
from connectors.models import AccountServer, ConnectedAccount
from connectors.registry import registry
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



def error(description):
    return OpenApiResponse(ErrorSerializer, description=description)


# What any endpoint may answer besides its own success.
COMMON_ERRORS = {
    401: error("The key is missing, wrong or revoked."),
    403: error("The key lacks the scope tokens:read."),
    429: error("The key made more calls than API_THROTTLE_RATE allows; Retry-After says when to go on."),
}


class HealthView(APIView):
    @extend_schema(
        operation_id="health",
        summary="Whether the API answers, and to which key",
        responses={200: HealthSerializer, **COMMON_ERRORS},
    )
    def get(self, request):
        return Response({"status": "ok", "key": request.auth.name})


class AccountsView(APIView):
    @extend_schema(
        operation_id="accounts_list",
        summary="A user's connected accounts, without their tokens",
        parameters=[AccountQuerySerializer],
        responses={
            200: AccountListSerializer,
            400: error("No user given, or a service id no connector has."),
            404: error("No user has that username."),
            **COMMON_ERRORS,
        },
    )
    def get(self, request):
        query = AccountQuerySerializer(data=request.query_params)
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
            try:
                registry.get(service)
            except UnknownConnector as error:
                raise exceptions.ValidationError({"service": [str(error)]}) from None
            accounts = accounts.filter(service_id=service)
        return Response(AccountListSerializer({"accounts": accounts}).data)


class AccountTokenView(APIView):
    @extend_schema(
        operation_id="account_token",
        summary="A valid access token for the account, refreshed first when it is near expiry",
        request=None,
        responses={
            200: TokenSerializer,
            404: error("No account has that id."),
            409: error("Only the user can renew the grant: they must reconnect the account (code needs_reconnect)."),
            503: error(
                "The provider is unavailable or rate limited (provider_unavailable), our side failed, or the "
                "account is being checked after a mass refusal and needs a refresh (service_unavailable, "
                "Retry-After 600); Retry-After says when to try again."
            ),
            **COMMON_ERRORS,
        },
        parameters=[OpenApiParameter("account_id", int, OpenApiParameter.PATH, description="The account's id.")],
    )
    def post(self, request, account_id):
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
