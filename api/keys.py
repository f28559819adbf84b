"""Service keys: issued once, stored as a digest, checked on every call.

A key is 32 random bytes (``secrets.token_urlsafe``), so a single SHA-256
is enough to make the stored digest useless to whoever reads the database:
there is nothing to guess. A slow password hash would only cost every call
the time it takes. The digest is looked up by the key's first characters,
then compared in constant time.
"""

import hashlib
import hmac
import secrets
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from .models import ServiceKey

# "bsk" for Backoffice service key: a leaked key is recognisable in a
# secret scanner's report or a log.
KEY_START = "bsk_"
PREFIX_LENGTH = len(KEY_START) + 8
# A busy key would otherwise write its row on every call.
LAST_USED_EVERY = timedelta(minutes=1)


def _digest(raw):
    return hashlib.sha256(raw.encode()).hexdigest()


def service_key_issue(key):
    """Give the unsaved ``key`` a new secret, save it, and return the secret: the one time it is seen."""
    for _ in range(3):
        raw = KEY_START + secrets.token_urlsafe(32)
        key.prefix, key.key_hash = raw[:PREFIX_LENGTH], _digest(raw)
        try:
            with transaction.atomic():
                key.save()
            return raw
        except IntegrityError:
            # Two keys sharing their first eight random characters: draw again.
            # A taken name fails the same way, and fails every time.
            if ServiceKey.objects.filter(name=key.name).exists():
                raise
    raise IntegrityError("could not draw a service key with a new prefix")


def service_key_create(*, name, scopes):
    """A new key named ``name``; returns it and its secret."""
    key = ServiceKey(name=name, scopes=" ".join(scopes))
    return key, service_key_issue(key)


def service_key_authenticate(raw):
    """The active key ``raw`` is, or None; a revoked key is None like a wrong one."""
    if not raw.startswith(KEY_START) or len(raw) <= PREFIX_LENGTH:
        return None
    try:
        # get(), not first(): a unique column needs no ORDER BY, which cost a third of the read.
        key = ServiceKey.objects.get(prefix=raw[:PREFIX_LENGTH])
    except ServiceKey.DoesNotExist:
        return None
    if not hmac.compare_digest(key.key_hash, _digest(raw)) or not key.active:
        return None
    return key


def note_use(key, *, now=None):
    """Record that ``key`` was used, unless that was done within the last minute.

    The condition sits in the UPDATE itself, so that processes using one key
    at once write it once between them; a recent record costs no statement.
    """
    now = now or timezone.now()
    since = now - LAST_USED_EVERY
    if key.last_used_at is not None and key.last_used_at > since:
        return
    ServiceKey.objects.filter(Q(last_used_at__isnull=True) | Q(last_used_at__lte=since), pk=key.pk).update(
        last_used_at=now
    )
    key.last_used_at = now


def service_key_revoke(key, *, now=None):
    """The key stops working at once, everywhere; its row stays, for the record."""
    if key.revoked_at is None:
        key.revoked_at = now or timezone.now()
        ServiceKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=key.revoked_at)
