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
    server: AccountServer | None


def token_fields(token, *, now):
    """The model fields a token answer sets; shared by connect and refresh."""
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


def _upsert(instance, *, unique, keep=()):
    """Insert ``instance``, or update the row its ``unique`` fields name, in one statement.

    Leaves ``instance`` carrying its row's primary key. One INSERT ... ON
    CONFLICT DO UPDATE replaces update_or_create's six statements (a locked
    read, an insert under savepoints, their releases), and the database
    settles two simultaneous connects of one identity by itself.
    """
    model = type(instance)
    update = [
        field.name
        for field in model._meta.concrete_fields
        if not field.primary_key and field.name not in (*unique, *keep)
    ]
    model.objects.bulk_create(
        [instance], update_conflicts=True, unique_fields=unique, update_fields=update
    )
    return instance


@transaction.atomic
def account_connect(*, user, connector, token, profile, server=None):
    """Store the grant on the one account of (user, provider identity).

    Connecting an identity again updates its row, so the account and its
    servers are never duplicated; a reconnect makes it active again.
    """
    now = timezone.now()
    account = _upsert(
        ConnectedAccount(
            user=user,
            service_id=connector.service_id,
            **profile,
            **token_fields(token, now=now),
            status=ConnectedAccount.Status.ACTIVE,
            status_reason="",
            status_changed_at=now,
            last_error="",
            last_error_at=None,
            refreshed_at=None,
        ),
        unique=("user", "service_id", "uid"),
        keep=("created_at",),
    )
    stored_server = None
    if server:
        stored_server = _upsert(
            AccountServer(
                account=account,
                server_id=server["id"],
                name=server.get("name", ""),
                permissions=server.get("permissions", ""),
                added_at=now,
            ),
            unique=("account", "server_id"),
        )
    return ConnectResult(account=account, server=stored_server)


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
