"""Grants no longer stored here: revoke them, or keep them to revoke again.

A grant we could not store, the one a reconnect replaced, a disconnected
account's: each is live at the provider and known nowhere here, so it is
revoked at once, outside the shared pace (``ratelimit.unpaced``): the cache
may be what just failed. When the provider does not confirm, the tokens are
kept, encrypted, in PendingRevocation (written through ``store_retrying``,
since the database may be what just failed) and every ``refresh_tokens``
run tries again for PENDING_REVOCATION_FOR. What is given up, or could not
even be kept, is logged as ``LEAKED:`` (never a token): only the person can
end that grant now.
"""

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.db import DatabaseError, transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from .base import REVOKE_GRANT, REVOKE_TOKEN
from .columns import column_text
from .config import config_values
from .exceptions import ConnectorError, EncryptionKeyError, NotSupported, UnknownConnector
from .models import ConnectedAccount, PendingRevocation, rows_by_pk
from .ratelimit import unpaced
from .registry import registry
from .storing import store_retrying

logger = logging.getLogger("connectors.revocations")

PENDING_REVOCATION_FOR = timedelta(hours=24)
REVOKED, PENDING, GIVEN_UP = "revoked", "pending", "given_up"


@dataclass
class RetrySummary:
    revoked: int = 0
    pending: int = 0
    given_up: int = 0

    def add(self, outcome):
        setattr(self, outcome, getattr(self, outcome) + 1)

    def __bool__(self):
        return bool(self.revoked or self.pending or self.given_up)

    def line(self):
        return (
            f"pending revocations: {self.revoked} revoked, {self.pending} still pending, "
            f"{self.given_up} given up"
        )


def gives_up_at(row):
    return row.created_at + PENDING_REVOCATION_FOR


def pending_revocations_count():
    return PendingRevocation.objects.count()


def _name(service_id):
    try:
        return registry.get(service_id).name
    except UnknownConnector:
        return service_id


def _who(uid):
    return f"user {uid}" if uid else "for an unknown user"


def _safe_error(error):
    """What a log line and the admin may say of a failure: our own errors' messages, else only a type."""
    return str(error)[:300] if isinstance(error, ConnectorError) else type(error).__name__


@sensitive_variables("access", "refresh", "values")
def _revoke(connector, access, refresh, values, scope):
    """Revoke outside the pace; None when the provider confirmed, else the error.

    Anything that goes wrong counts as a failed revocation, reading the
    configuration included: in the flow this runs while another error is
    on its way up, which it must not replace.
    """
    try:
        with unpaced():
            values = config_values(connector.service_id) if values is None else values
            connector.revoke(ConnectedAccount(access_token=access, refresh_token=refresh), values, scope=scope)
    except Exception as error:
        return error
    return None


@sensitive_variables("tokens", "values", "access", "refresh")
def grant_revoke_unstored(*, connector, tokens, uid="", values=None, what, scope=REVOKE_TOKEN):
    """Revoke a grant no longer stored here; keep it to revoke again when that fails.

    ``tokens`` is a token answer (a dict) or an object with the two tokens:
    one we obtained but could not store, the one a reconnect replaced
    (``scope`` REVOKE_TOKEN), or a disconnected account's (REVOKE_GRANT).
    Returns whether the provider confirmed the revocation.
    """
    if isinstance(tokens, dict):
        access, refresh = tokens.get("access_token"), tokens.get("refresh_token")
    else:
        access, refresh = getattr(tokens, "access_token", None), getattr(tokens, "refresh_token", None)
    access = access if isinstance(access, str) else ""
    refresh = refresh if isinstance(refresh, str) else ""
    if not (access or refresh):
        return False
    uid = column_text(PendingRevocation, "uid", uid) if isinstance(uid, str) else ""
    what = column_text(PendingRevocation, "what", what)
    error = _revoke(connector, access, refresh, values, scope)
    if error is None:
        logger.info("revoked %s at %s", what, connector.name)
        return True
    if isinstance(error, NotSupported):
        if scope == REVOKE_GRANT:
            # A disconnect: the person is told how to remove the app themselves.
            logger.info("%s offers no revocation: %s stays live until the person removes the app",
                        connector.name, what)
            return False
        logger.error(
            "LEAKED: %s of %s %s stays live: %s offers no revocation",
            what, connector.name, _who(uid), connector.name,
        )
        return False
    reason = _safe_error(error)

    def keep():
        PendingRevocation.objects.create(
            service_id=connector.service_id, uid=uid, what=what, scope=scope, access_token=access,
            refresh_token=refresh,
            attempts=1, last_attempt_at=timezone.now(), last_error=reason,
        )

    try:
        store_retrying(keep, what=f"{what} of {connector.name}, to revoke again")
    except DatabaseError as kept:
        logger.error(
            "LEAKED: %s of %s %s could not be revoked nor kept (%s; keeping it: %s)",
            what, connector.name, _who(uid), reason, type(kept).__name__,
        )
        return False
    logger.error(
        "LEAKED: %s of %s %s could not be revoked (%s); kept to revoke again for %s hours",
        what, connector.name, _who(uid), reason, int(PENDING_REVOCATION_FOR.total_seconds() // 3600),
    )
    return False


def revocations_retry(*, now=None):
    """Try every pending revocation again (``refresh_tokens`` does, on every run); a RetrySummary.

    Rows are read as primary keys, then each is locked on its own with
    ``skip_locked``: a row another run holds is its work, not counted here.
    """
    now = now or timezone.now()
    summary = RetrySummary()
    for (pk,) in rows_by_pk(PendingRevocation.objects.all(), ("pk",), batch_size=100):
        outcome = revocation_retry_one(PendingRevocation(pk=pk), now=now)
        if outcome is not None:
            summary.add(outcome)
    return summary


def revocation_retry_one(row, *, now=None):
    """Try ``row``'s revocation again under its row lock; REVOKED, PENDING or GIVEN_UP.

    None when another run holds the row or it is gone. Revoked, the row is
    deleted. A failure is noted on the row; past PENDING_REVOCATION_FOR
    (counted from when the grant was kept, checked after this last try) it
    is given up, as is a row no registered connector can revoke. On SQLite
    the transaction holds the database's write lock during the one request.
    """
    now = now or timezone.now()
    with transaction.atomic():
        row = (
            PendingRevocation.objects.select_for_update(skip_locked=True)
            .defer("access_token", "refresh_token")
            .filter(pk=row.pk)
            .first()
        )
        if row is None:
            return None
        try:
            connector = registry.get(row.service_id)
        except UnknownConnector:
            return _give_up(row, "no connector is registered under it", name=row.service_id)
        try:
            row.refresh_from_db(fields=["access_token", "refresh_token"])
        except EncryptionKeyError as unreadable:
            error = unreadable
        else:
            error = _revoke(connector, row.access_token, row.refresh_token, None, row.scope)
        if error is None:
            row.delete()
            logger.info("revoked %s of %s %s at last (attempt %s)", row.what, connector.name,
                        _who(row.uid), row.attempts + 1)
            return REVOKED
        if isinstance(error, NotSupported):
            return _give_up(row, f"{connector.name} offers no revocation", name=connector.name)
        reason = _safe_error(error)
        if now >= gives_up_at(row):
            return _give_up(row, f"after {row.attempts + 1} attempts; the last: {reason}", name=connector.name)
        PendingRevocation.objects.filter(pk=row.pk).update(
            attempts=row.attempts + 1, last_attempt_at=now, last_error=reason
        )
        return PENDING


def _give_up(row, why, *, name):
    row.delete()
    logger.error("LEAKED: gave up revoking %s of %s %s: %s", row.what, name, _who(row.uid), why)
    return GIVEN_UP


def revocation_dropped(row, *, by):
    """An operator deleted ``row`` in the admin: that grant is given up too."""
    logger.error("LEAKED: gave up revoking %s of %s %s: deleted in the admin by %s",
                 row.what, _name(row.service_id), _who(row.uid), by)
