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
from django.db import DatabaseError, connection, transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from .accounts import needs_reconnect, token_fields
from .config import config_client_values
from .breaker import Breaker
from .exceptions import (
    CircuitOpen,
    ConnectorError,
    InvalidGrant,
    NeedsReconnect,
    RateLimited,
    RefreshNotStored,
    Unauthorized,
)
from .models import ConnectedAccount
from .oauth import token_refresh
from .ratelimit import allowed_wait, held_briefly

logger = logging.getLogger("connectors.tokens")

# A refresh the rate limit holds back is tried this many times in all, each
# wait at most this many seconds; a sweep puts what is left back in its queue.
RATE_LIMIT_ATTEMPTS = 3
RATE_LIMIT_MAX_WAIT = 60.0

# Writes of a refreshed pair after a database error: attempts, and the pause
# before each (times the attempt's number).
STORE_ATTEMPTS = 3
STORE_BACKOFF = 0.5


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
    account, *, margin=None, force=False, skip_locked=False, min_age=None, max_wait=None
):
    """Refresh under the row lock; return a Refresh with the stored account.

    With ``force`` a still-valid token is refreshed too (the admin's "refresh
    now"). With ``skip_locked`` an account locked by someone else is left
    alone and None is returned (for sweeps that run on several hosts). With
    ``min_age`` (a timedelta) an account refreshed less than that long ago is
    left as it is: another sweep just did the work.

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
                    account, margin=margin, force=force, skip_locked=skip_locked, min_age=min_age
                )
        except RateLimited as limited:
            wait = 1.0 if limited.retry_after is None else limited.retry_after
            if attempt + 1 == RATE_LIMIT_ATTEMPTS or wait > allowed_wait(max_wait):
                _note_rate_limited(account, limited)
                raise
            time.sleep(wait)
    raise AssertionError("unreachable")


def _account_refresh_locked(account, *, margin, force, skip_locked, min_age):
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
            if locked.status == ConnectedAccount.Status.NEEDS_RECONNECT:
                raise NeedsReconnect(
                    locked.status_reason or locked.connector.reconnect_reason, account_id=locked.pk
                )
            if not force and (
                _usable(locked.expires_at, locked.status, margin=margin)
                or _recent(locked.refreshed_at, min_age)
            ):
                _copy_tokens(locked, account)
                return Refresh(account=locked, refreshed=False)
            try:
                token = _call_refresh(locked)
            except (RateLimited, CircuitOpen) as error:
                # Nothing happened at the provider. The transaction commits all
                # the same: on SQLite the shared pace and breaker (the database
                # cache) are written on this very connection.
                failure = error
            except ConnectorError as error:
                failure = _record_failure(locked, error)
            else:
                _store_refresh(locked, token)
    except DatabaseError as error:
        if token is None:
            raise
        locked = _store_after_database_error(account.pk, token, error)
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
    values = config_client_values(connector)
    if not locked.refresh_token:
        raise InvalidGrant("The account has no refresh token.")
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


def _store_after_database_error(pk, token, error):
    """The provider rotated the tokens but the first write failed: the new pair must not be lost.

    The old refresh token is dead by now, so nobody else can have refreshed
    meanwhile; the pair is written again, a bounded number of times, on a
    connection checked first. What is logged names the failure, never a token.
    """
    logger.warning("storing the refreshed tokens of account %s failed (%s); trying again", pk, type(error).__name__)
    fields = {**_refreshed_fields(token), "status": ConnectedAccount.Status.ACTIVE, "status_reason": ""}
    for attempt in range(1, STORE_ATTEMPTS + 1):
        time.sleep(STORE_BACKOFF * attempt)
        try:
            if not connection.in_atomic_block and not connection.is_usable():
                connection.close()
            with transaction.atomic():
                ConnectedAccount.objects.filter(pk=pk).update(**fields)
            logger.info("stored the refreshed tokens of account %s at attempt %s", pk, attempt)
            return ConnectedAccount.objects.get(pk=pk)
        except DatabaseError as again:
            error = again
    logger.error(
        "LOST: the provider rotated the tokens of account %s, but they could not be stored after %s "
        "attempts (%s); the account will need reconnecting",
        pk, STORE_ATTEMPTS, type(error).__name__,
    )
    raise RefreshNotStored(
        "The provider refreshed this account, but the database could not store the new tokens; "
        "the account will need reconnecting."
    ) from None


def _record_failure(locked, error):
    """Keep the tokens; note what happened; return the error the caller gets."""
    if isinstance(error, InvalidGrant):
        connector = locked.connector
        needs_reconnect(locked, connector=connector, reason=connector.reconnect_reason, error=error)
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
    account needs a reconnect, as after a refused refresh.
    """
    connector = account.connector
    try:
        return connector.grant_info(fresh_access_token(account))
    except Unauthorized as error:
        with transaction.atomic():
            locked = ConnectedAccount.objects.select_for_update().filter(pk=account.pk).first()
            if locked is not None:
                needs_reconnect(locked, connector=connector, reason=connector.reconnect_reason, error=error)
        raise NeedsReconnect(connector.reconnect_reason, account_id=account.pk) from error
