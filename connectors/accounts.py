"""Stored accounts: connect (create or update), disconnect (revoke, then delete)."""

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from .config import config_values
from .exceptions import ConnectorError
from .models import AccountServer, ConnectedAccount

logger = logging.getLogger("connectors.accounts")


@dataclass(frozen=True)
class ConnectResult:
    account: ConnectedAccount
    created: bool
    server: AccountServer | None


def token_fields(token, *, now=None):
    """The model fields a token answer sets; shared by connect and refresh."""
    now = now or timezone.now()
    scope = token.get("scope") or []
    if isinstance(scope, str):
        scope = scope.split()
    expires_in = token.get("expires_in")
    return {
        "access_token": token["access_token"],
        "refresh_token": token.get("refresh_token") or "",
        "token_type": token.get("token_type") or "Bearer",
        "scopes": " ".join(scope),
        "expires_at": now + timedelta(seconds=int(expires_in)) if expires_in else None,
    }


@transaction.atomic
def account_connect(*, user, connector, token, profile, server=None):
    """Store the grant on the one account of (user, provider identity).

    Connecting an identity again updates its row, so the account and its
    servers are never duplicated; a reconnect makes it active again.
    """
    now = timezone.now()
    fields = {
        **token_fields(token, now=now),
        **profile,
        "status": ConnectedAccount.Status.ACTIVE,
        "status_reason": "",
        "status_changed_at": now,
        "last_error": "",
        "last_error_at": None,
        "refreshed_at": None,
    }
    uid = fields.pop("uid")
    account, created = ConnectedAccount.objects.select_for_update().update_or_create(
        user=user, service_id=connector.service_id, uid=uid, defaults=fields
    )
    stored_server = None
    if server:
        stored_server, _ = AccountServer.objects.update_or_create(
            account=account,
            server_id=server["id"],
            defaults={
                "name": server.get("name", ""),
                "permissions": server.get("permissions", ""),
                "added_at": now,
            },
        )
    return ConnectResult(account=account, created=created, server=stored_server)


def account_disconnect(*, account, connector):
    """Revoke the grant at the provider, then delete the account whatever happened.

    Returns whether the provider confirmed the revocation; the caller tells
    the person when it did not, since the grant may live on there.
    """
    revoked = True
    try:
        values = config_values(connector.service_id)
        connector.revoke(account, values)
    except ConnectorError as error:
        revoked = False
        logger.warning(
            "could not revoke %s account %s of user %s at the provider: %s",
            connector.name, account.uid, account.user_id, error,
        )
    uid, user_id = account.uid, account.user_id
    account.delete()
    logger.info("disconnected %s account %s of user %s", connector.name, uid, user_id)
    return revoked
