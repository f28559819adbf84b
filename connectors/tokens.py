"""Fresh access tokens for the code that acts for a user.

Providers may rotate refresh tokens: once a refresh succeeds, the old
refresh token is dead. Two refreshes of one grant racing each other leave one side
holding a dead token, and if that side's answer is the one stored the
account is lost. So a refresh happens only under the account's row lock, and
whoever takes the lock first re-reads the row: if another caller refreshed
meanwhile, the new token is simply used.
"""

import logging
import time
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from .accounts import needs_reconnect, token_fields
from .brake import Mark, held_check
from .config import config_client_values, credentials_accepted, credentials_refused_note
from .breaker import Breaker
from .exceptions import (
    CircuitOpen,
    ConnectorError,
    CredentialsRefused,
    InvalidGrant,
    MarkHeld,
    NeedsReconnect,
    NothingToRefresh,
    NotSupported,
    RateLimited,
    RefreshNotStored,
    ServiceUnavailable,
    Unauthorized,
)
from .models import ConnectedAccount
from .oauth import token_refresh
from .ratelimit import allowed_wait, held_briefly
from .revocations import grant_revoke_unstored
from .storing import store_retrying

logger = logging.getLogger("connectors.tokens")

# A refresh the rate limit holds back is tried this many times in all, each
# wait at most this many seconds; a sweep puts what is left back in its queue.
RATE_LIMIT_ATTEMPTS = 3
RATE_LIMIT_MAX_WAIT = 60.0


@dataclass(frozen=True)
class Refresh:
    """What account_refresh did: a sweep must tell its own refresh from someone else's."""

    account: ConnectedAccount
    # False when the token found under the lock was still good, because
    # another caller refreshed it first (or it never needed it).
    refreshed: bool


def _margin(margin):
    """Seconds or a timedelta; None means the TOKEN_REFRESH_MARGIN setting."""
    if isinstance(margin, timedelta):
        return margin
    return timedelta(seconds=settings.TOKEN_REFRESH_MARGIN if margin is None else margin)


def _usable(expires_at, status, *, margin):
    if status != ConnectedAccount.Status.ACTIVE:
        return False
    return expires_at is None or expires_at > timezone.now() + margin


def fresh_access_token(account, *, margin=None):
    """A valid access token for ``account``, refreshed first if it expires within ``margin``.

    A valid stored token costs one query (the row is re-read, since another
    process may have rotated the token the caller's object still holds) and
    no HTTP request. That read also sets the account's ``expires_at``,
    ``token_type`` and ``scopes`` as stored, so a caller holding only the
    primary key (the HTTP API) has the whole grant without a second one.
    Raises NeedsReconnect when only the user can renew the grant, and
    ProviderUnavailable (or another ProviderError) when the provider failed;
    the stored tokens are unchanged then.
    """
    margin = _margin(margin)
    # get(), not first(): no ORDER BY to build for a primary key (a quarter
    # of the time this read took in bench/api.py).
    try:
        row = ConnectedAccount.objects.values(
            "access_token", "expires_at", "status", "token_type", "scopes"
        ).get(pk=account.pk)
    except ConnectedAccount.DoesNotExist:
        raise ConnectedAccount.DoesNotExist(f"Connected account {account.pk} no longer exists.") from None
    if _usable(row["expires_at"], row["status"], margin=margin):
        account.access_token, account.expires_at = row["access_token"], row["expires_at"]
        account.token_type, account.scopes = row["token_type"], row["scopes"]
        return row["access_token"]
    return account_refresh(account, margin=margin).account.access_token


def account_refresh(
    account, *, margin=None, force=False, skip_locked=False, min_age=None, max_wait=None, skip_services=()
):
    """Refresh under the row lock; return a Refresh with the stored account.

    With ``force`` a still-valid token is refreshed too (the admin's "refresh
    now"). With ``skip_locked`` an account locked by someone else is left
    alone and None is returned (for sweeps that run on several hosts). With
    ``min_age`` (a timedelta) an account refreshed less than that long ago is
    left as it is: another sweep just did the work. An account of a
    connector in ``skip_services`` is left alone too, and None returned (a
    sweep that met its credentials refused).

    A rate limit is never waited out while the row is locked: the lock is let
    go, the wait happens outside, and the refresh starts again (a bounded
    number of times) from the re-read row. ``max_wait`` bounds each such wait
    (default RATE_LIMIT_MAX_WAIT; 0 hands RateLimited back at once, for a
    sweep that has other accounts to do meanwhile).
    """
    margin = _margin(margin)
    max_wait = RATE_LIMIT_MAX_WAIT if max_wait is None else max_wait
    for attempt in range(RATE_LIMIT_ATTEMPTS):
        try:
            with held_briefly():
                return _account_refresh_locked(
                    account, margin=margin, force=force, skip_locked=skip_locked, min_age=min_age,
                    skip_services=skip_services,
                )
        except RateLimited as limited:
            wait = 1.0 if limited.retry_after is None else limited.retry_after
            if attempt + 1 == RATE_LIMIT_ATTEMPTS or wait > allowed_wait(max_wait):
                _note_rate_limited(account, limited)
                raise
            time.sleep(wait)
    raise AssertionError("unreachable")


def _account_refresh_locked(account, *, margin, force, skip_locked, min_age, skip_services):
    failure = token = None
    try:
        with transaction.atomic():
            locked = (
                ConnectedAccount.objects.select_for_update(skip_locked=skip_locked)
                .filter(pk=account.pk)
                .first()
            )
            if locked is None:
                if skip_locked:
                    return None
                raise ConnectedAccount.DoesNotExist(f"Connected account {account.pk} no longer exists.")
            if locked.service_id in skip_services:
                return None
            if locked.status == ConnectedAccount.Status.NEEDS_RECONNECT:
                raise NeedsReconnect(
                    locked.status_reason or locked.connector.reconnect_reason, account_id=locked.pk
                )
            if not force and (
                _usable(locked.expires_at, locked.status, margin=margin)
                or _recent(locked.refreshed_at, min_age)
                # Nothing to refresh: the stored token is all there is, and
                # only the provider can say whether it still works.
                or not locked.refresh_token
            ):
                _copy_tokens(locked, account)
                return Refresh(account=locked, refreshed=False)
            try:
                # A mark the brake holds: the provider is not asked until an operator decides.
                held_check(locked)
                token = _call_refresh(locked)
            except CredentialsRefused as error:
                failure = _credentials_refused(locked, error)
            except (RateLimited, CircuitOpen, ServiceUnavailable, NothingToRefresh) as error:
                # Nothing happened at the provider (ours: nothing was sent). The
                # transaction commits all the same: on SQLite the shared pace
                # and breaker (the database cache) are written on this very
                # connection.
                failure = error
            except ConnectorError as error:
                failure = _record_failure(locked, error)
            else:
                _store_refresh(locked, token)
                credentials_accepted(locked.connector)
    except DatabaseError as error:
        if token is None:
            raise
        locked = _store_after_database_error(locked, token, error)
    if failure is not None:
        raise failure
    _copy_tokens(locked, account)
    return Refresh(account=locked, refreshed=True)


def _recent(refreshed_at, min_age):
    return min_age is not None and refreshed_at is not None and refreshed_at > timezone.now() - min_age


def _note_rate_limited(account, error):
    """The account's record of a refresh the rate limit kept from happening; no lock needed."""
    ConnectedAccount.objects.filter(pk=account.pk).update(
        last_error=str(error)[:300], last_error_at=timezone.now()
    )


@sensitive_variables("values", "token")
def _call_refresh(locked):
    """The provider's answer to one refresh; the breaker hears whether it came in time."""
    connector = locked.connector
    if not locked.refresh_token:
        raise NothingToRefresh(
            "This token does not expire; nothing to refresh." if locked.expires_at is None
            else f"{connector.name} gave this account no refresh token; nothing to refresh."
        )
    values = config_client_values(connector)
    with Breaker(connector.service_id).watching(connector.name):
        return token_refresh(
            connector,
            client_id=values["clientId"],
            client_secret=values["clientSecret"],
            refresh_token=locked.refresh_token,
        )


def _refreshed_fields(token):
    now = timezone.now()
    return {
        **token_fields(token, now=now, lenient=True),
        "refreshed_at": now,
        "last_error": "",
        "last_error_at": None,
    }


def _store_refresh(locked, token):
    for name, value in _refreshed_fields(token).items():
        setattr(locked, name, value)
    locked.save()
    connector = locked.connector
    logger.info("refreshed %s account %s of user %s", connector.name, locked.uid, locked.user_id)


def _store_after_database_error(locked, token, error):
    """The provider rotated the tokens but the first write failed: the new pair must not be lost.

    The old refresh token is dead by now, so the pair we hold is the only
    one that works; it is written again (``store_retrying``: for
    TOKEN_STORE_RETRY_FOR seconds, a fresh connection each time, the first
    soon, before a caller that waited for the row lock gets far). Given up,
    it is revoked, since nothing may stay live at the provider that is not
    stored here. What is logged names the failure, never a token.
    """
    pk, connector = locked.pk, locked.connector
    logger.warning("storing the refreshed tokens of account %s failed (%s); trying again", pk, type(error).__name__)
    fields = {**_refreshed_fields(token), "status": ConnectedAccount.Status.ACTIVE, "status_reason": "",
              "marked_by": ""}

    def write():
        ConnectedAccount.objects.filter(pk=pk).update(**fields)
        return ConnectedAccount.objects.get(pk=pk)

    try:
        return store_retrying(write, what=f"the refreshed tokens of account {pk}")
    except DatabaseError as again:
        logger.error(
            "LOST: the provider rotated the tokens of account %s, but they could not be stored within %s s "
            "(%s); the account will need reconnecting",
            pk, settings.TOKEN_STORE_RETRY_FOR, type(again).__name__,
        )
    grant_revoke_unstored(
        connector=connector, tokens=token, uid=locked.uid, what="a refreshed grant that could not be stored"
    )
    raise RefreshNotStored(
        "The provider refreshed this account, but the database could not store the new tokens; "
        "the account will need reconnecting."
    ) from None


def _credentials_refused(locked, error):
    """The app's own credentials were refused: the connector is flagged, the account left as it is."""
    connector = locked.connector
    credentials_refused_note(connector, error)
    logger.warning("%s refused the app's credentials while refreshing account %s: %s",
                   connector.name, locked.pk, error)
    error.service_id = locked.service_id
    return error


def _record_failure(locked, error):
    """Keep the tokens; note what happened; return the error the caller gets."""
    if isinstance(error, InvalidGrant):
        connector = locked.connector
        if needs_reconnect(locked, connector=connector, reason=connector.reconnect_reason, error=error,
                           marked_by=ConnectedAccount.MarkedBy.REFRESH) is Mark.HELD:
            return MarkHeld(account_id=locked.pk)
        logger.warning(
            "marked %s account %s of user %s needs reconnect: %s",
            connector.name, locked.uid, locked.user_id, error,
        )
        reconnect = NeedsReconnect(locked.status_reason, account_id=locked.pk)
        reconnect.__cause__ = error
        return reconnect
    locked.last_error, locked.last_error_at = str(error)[:300], timezone.now()
    locked.save(update_fields=["last_error", "last_error_at", "updated_at"])
    logger.warning(
        "could not refresh %s account %s of user %s: %s",
        locked.connector.name, locked.uid, locked.user_id, error,
    )
    return error


def _copy_tokens(source, target):
    if source is not target:
        for name in ("access_token", "refresh_token", "token_type", "expires_at", "status", "refreshed_at", "scopes"):
            setattr(target, name, getattr(source, name))


def account_check(account):
    """Ask the provider how it sees the grant (scopes, expiry), with a fresh token.

    A token the provider refuses although it is fresh was revoked there: the
    account needs a reconnect, as after a refused refresh. Nothing else
    marks it here: not the app's credentials refused, not a timeout.
    """
    connector = account.connector
    # Outside the try: a refusal of the refresh (the app's credentials, say)
    # is not the provider's word on this grant.
    access_token = fresh_access_token(account)
    try:
        return connector.grant_info(access_token)
    except CredentialsRefused:
        raise
    except Unauthorized as error:
        with transaction.atomic():
            locked = ConnectedAccount.objects.select_for_update().filter(pk=account.pk).first()
            held = locked is not None and needs_reconnect(
                locked, connector=connector, reason=connector.reconnect_reason, error=error,
                marked_by=ConnectedAccount.MarkedBy.CHECK,
            ) is Mark.HELD
        if held:
            raise MarkHeld(account_id=account.pk) from error
        raise NeedsReconnect(connector.reconnect_reason, account_id=account.pk) from error


@dataclass(frozen=True)
class RefreshNow:
    """What the admin's "Refresh the token now" did."""

    account: ConnectedAccount
    refreshed: bool
    # Why nothing was refreshed, and how the provider saw the grant instead (None: it offers no check).
    note: str = ""
    grant: dict | None = None


def account_refresh_now(account):
    """Refresh even a valid token; one that does not expire is checked at the provider instead.

    Nothing here marks an account that has no refresh token: the grant
    check alone may, on the provider's refusal of the token itself.
    """
    try:
        return RefreshNow(account=account_refresh(account, force=True).account, refreshed=True)
    except NothingToRefresh as nothing:
        try:
            grant = account_check(account)
        except NotSupported:
            grant = None
        return RefreshNow(account=account, refreshed=False, note=str(nothing), grant=grant)
