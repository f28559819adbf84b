"""Stored accounts: connect (create or update), disconnect (revoke, then delete)."""

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from .brake import BRAKED, Mark, brake_engaged, mark_dropped, mark_hold
from .base import REVOKE_GRANT
from .columns import UNSAFE, column_text, refused
from .exceptions import ProviderError
from .models import AccountServer, ConnectedAccount, HeldMark
from .revocations import grant_revoke_unstored
from .signals import account_connected, account_disconnected, account_needs_reconnect, send_after_commit

logger = logging.getLogger("connectors.accounts")


# What the accounts page shows of an account and of a server: never a token.
PAGE_ACCOUNT_FIELDS = ("service_id", "uid", "username", "display_name", "avatar_url", "scopes", "status",
                       "status_reason", "refreshed_at", "created_at")
PAGE_SERVER_FIELDS = ("account_id", "server_id", "name", "permissions", "permissions_source", "added_at",
                      "access_lost_at", "access_lost_reason")


def accounts_of(user):
    """``user``'s accounts, newest first, each with its servers in ``server_list``; no token is read.

    Each says in ``held`` whether the brake on mass marking holds its mark
    (connectors.brake: the page says "being checked"). Two plain queries:
    Django's prefetch machinery cost the accounts page more than both of them.
    """
    accounts = list(
        ConnectedAccount.objects.filter(user=user)
        .only(*PAGE_ACCOUNT_FIELDS)
        .annotate(held=Exists(HeldMark.objects.filter(account_id=OuterRef("pk"))))
    )
    by_id = {}
    for account in accounts:
        account.server_list = []
        by_id[account.pk] = account
    if by_id:
        for server in AccountServer.objects.filter(account_id__in=by_id).only(*PAGE_SERVER_FIELDS):
            server.account = by_id[server.account_id]
            server.account.server_list.append(server)
    return accounts


@dataclass(frozen=True)
class ConnectResult:
    account: ConnectedAccount
    server: AccountServer | None
    # The grant a reconnect replaced (its tokens only), to revoke; or None.
    replaced: ConnectedAccount | None = None


# The longest token lifetime taken from a provider: ten years; and the one
# assumed for a refreshed token whose answer gave an odd one.
MAX_EXPIRES_IN = 10 * 365 * 86400
ODD_EXPIRES_IN = 3600


@sensitive_variables("token", "fields", "access_token", "refresh_token")
def token_fields(token, *, now, lenient=False):
    """The model fields a token answer sets, checked and made safe; shared by connect and refresh.

    A connect refuses an answer with an odd field (the new grant is then
    revoked). A refresh is ``lenient``: the provider has already rotated the
    tokens, so they are kept whatever else is odd; an odd lifetime counts as
    ODD_EXPIRES_IN, an odd scope or type leaves the stored one as it is.
    """
    fields = {}
    access_token = token.get("access_token")
    if not isinstance(access_token, str) or not access_token or UNSAFE.search(access_token):
        raise refused("no usable access_token")
    refresh_token = token.get("refresh_token") or ""
    if not isinstance(refresh_token, str) or UNSAFE.search(refresh_token):
        raise refused("refresh_token is not usable")
    fields["access_token"], fields["refresh_token"] = access_token, refresh_token
    try:
        fields["expires_at"] = _expires_at(token.get("expires_in"), now)
    except ProviderError:
        if not lenient:
            raise
        fields["expires_at"] = now + timedelta(seconds=ODD_EXPIRES_IN)
    try:
        fields["scopes"] = column_text(ConnectedAccount, "scopes", " ".join(_scopes(token.get("scope"))))
        fields["token_type"] = column_text(ConnectedAccount, "token_type", token.get("token_type")) or "Bearer"
    except ProviderError:
        if not lenient:
            raise
    return fields


def _expires_at(expires_in, now):
    if expires_in is None:
        return None
    try:
        expires_in = int(expires_in)
    except (TypeError, ValueError, OverflowError):
        raise refused("expires_in is not a number") from None
    if not 0 < expires_in <= MAX_EXPIRES_IN:
        raise refused("expires_in is out of range")
    return now + timedelta(seconds=expires_in)


def _scopes(scope):
    if scope is None:
        return []
    if isinstance(scope, str):
        return scope.split()
    if not isinstance(scope, list) or not all(isinstance(item, str) for item in scope):
        raise refused("scope is not a list of scopes")
    return scope


def profile_fields(profile):
    """The account's profile columns from a connector's mapping, made safe."""
    fields = {
        name: column_text(ConnectedAccount, name, profile.get(name))
        for name in ("username", "display_name", "avatar_url", "email")
    }
    fields["uid"] = column_text(ConnectedAccount, "uid", profile.get("uid"), required=True)
    return fields


@sensitive_variables("server", "token")
def server_fields(server):
    granted = server.get("permissions_granted") is True
    token = server.get("token")
    if not (token is None or isinstance(token, str)):
        raise refused("the server's token is not text")
    return {
        "token": token or "",
        "server_id": column_text(AccountServer, "server_id", server.get("id"), required=True),
        "name": column_text(AccountServer, "name", server.get("name")),
        "permissions": column_text(AccountServer, "permissions", server.get("permissions")),
        "permissions_source": AccountServer.Source.GRANTED if granted else AccountServer.Source.REQUESTED,
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
@sensitive_variables("token", "tokens")
def account_connect(*, user, connector, token, profile, server=None):
    """Store the grant on the one account of (user, provider identity).

    Connecting an identity again updates its row, so the account and its
    servers are never duplicated; a reconnect makes it active again, and the
    result names the grant it replaced (``replaced``), for the caller to
    revoke once this one is stored. Whatever the provider sent is checked
    and made safe first: a value that cannot be stored raises ProviderError
    and nothing is written.
    """
    now = timezone.now()
    profile = profile_fields(profile)
    tokens = token_fields(token, now=now)
    server = server_fields(server) if server else None
    replaced = (
        ConnectedAccount.objects.select_for_update()
        .filter(user=user, service_id=connector.service_id, uid=profile["uid"])
        .only("access_token", "refresh_token")
        .first()
    )
    account = _upsert(
        ConnectedAccount(
            user=user,
            service_id=connector.service_id,
            **profile,
            **tokens,
            status=ConnectedAccount.Status.ACTIVE,
            status_reason="",
            status_changed_at=now,
            marked_by="",
            connected_at=now,
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
            AccountServer(account=account, **server, added_at=now),
            unique=("account", "server_id"),
        )
    send_after_commit(account_connected, connector, account=account, created=replaced is None)
    if replaced is not None and replaced.access_token == account.access_token:
        replaced = None
    return ConnectResult(account=account, server=stored_server, replaced=replaced)


def account_disconnect(*, account, connector):
    """Revoke the person's whole grant at the provider, then delete the account whatever happened.

    Returns whether the provider confirmed the revocation; the caller tells
    the person when it did not. A revocation that failed is kept and tried
    again (connectors.revocations): nothing stays live there once it is not
    stored here.
    """
    uid, user_id, account_id = account.uid, account.user_id, account.pk
    revoked = grant_revoke_unstored(
        connector=connector, tokens=account, uid=uid, scope=REVOKE_GRANT,
        what=f"the disconnected account of user {user_id}",
    )
    with transaction.atomic():
        deleted, _ = ConnectedAccount.objects.filter(pk=account_id).delete()
        account.pk = None
        if deleted:
            send_after_commit(account_disconnected, connector, account=account, account_id=account_id)
    logger.info("disconnected %s account %s of user %s", connector.name, uid, user_id)
    return revoked


def needs_reconnect(account, *, connector, reason, error, marked_by, now=None, counted=True):
    """Mark ``account`` (its row locked by the caller) as needing a reconnect, ``error`` noted; a Mark.

    ``marked_by`` (ConnectedAccount.MarkedBy) says what refused the grant. A
    refused refresh or grant check counts against the brake on mass marking
    (connectors.brake): past MARK_BRAKE such marks of the connector within
    the window, the mark is held instead (Mark.HELD: a HeldMark, the status
    as it was, no signal). The provider's event, and an operator's confirm
    (``counted=False``), are never held.

    Saves only what changes, and tells other code once per change: an
    account that already needs one is left as it is (Mark.UNCHANGED). The
    result is true, and counts 1 in a sum, only when the account was marked.
    """
    if account.status == ConnectedAccount.Status.NEEDS_RECONNECT:
        return Mark.UNCHANGED
    now = now or timezone.now()
    if counted and marked_by in BRAKED and brake_engaged(account.service_id, now=now):
        mark_hold(account, connector=connector, reason=reason, error=error, marked_by=marked_by, now=now)
        return Mark.HELD
    account.last_error, account.last_error_at = str(error)[:300], now
    account.status = ConnectedAccount.Status.NEEDS_RECONNECT
    account.status_reason = reason[:300]
    account.status_changed_at = now
    account.marked_by = marked_by
    account.save(update_fields=["status", "status_reason", "status_changed_at", "marked_by", "last_error",
                                "last_error_at", "updated_at"])
    mark_dropped(account)
    send_after_commit(account_needs_reconnect, connector, account=account, reason=account.status_reason)
    return Mark.MARKED


def accounts_removed_at_provider(*, connector, uids, reason, event_time=None):
    """The provider says these identities removed the app: their active accounts need a reconnect.

    An account connected (or reconnected) after ``event_time``, the event's
    own time when the provider gave one, holds a newer grant than the one
    removed, and is left as it is. Each row is locked, so that a refresh
    running meanwhile and this mark settle one after the other, and the
    signal goes once. Returns how many changed.
    """
    changed = 0
    with transaction.atomic():
        rows = ConnectedAccount.objects.select_for_update().filter(
            service_id=connector.service_id, uid__in=uids, status=ConnectedAccount.Status.ACTIVE
        )
        for account in rows:
            connected_at = account.connected_at or account.created_at
            if event_time is not None and connected_at > event_time:
                logger.info("%s account %s of user %s left as it is: event older than the connection",
                            connector.name, account.uid, account.user_id)
                continue
            changed += needs_reconnect(account, connector=connector, reason=reason, error=reason,
                                       marked_by=ConnectedAccount.MarkedBy.EVENT)
    return changed
