"""Discord's webhook events (Developer Portal → Webhooks → Events): verified, then read.

Discord signs the timestamp followed by the raw body with the application's
Ed25519 key and disables an endpoint that accepts a bad signature; a
delivery older than five minutes is refused too, so that a captured one
cannot be replayed later. Within those five minutes the framework takes a
delivery once: its events carry no id, so the signature tells one delivery
from another; the event's time (the body's ``event.timestamp``) tells an
event older than a reconnect.
"""

import hashlib
import json
import re
import time
from datetime import datetime, timezone
from types import MappingProxyType

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from connectors.base import ProviderEvent
from connectors.exceptions import EventRefused

MAX_AGE = 300
HEX = frozenset("0123456789abcdefABCDEF")

# The shape of the two headers Discord signs a delivery with (the
# connector's ``event_headers``): ASCII only, bounded, read with fullmatch.
# The Ed25519 signature's 64 bytes in hex (in either case: it verifies the
# same); the Unix time in seconds (twelve digits reach the year 33658).
SIGNATURE_HEADER, TIMESTAMP_HEADER = "X-Signature-Ed25519", "X-Signature-Timestamp"
SIGNATURE = re.compile(r"[0-9a-fA-F]{128}")
TIMESTAMP = re.compile(r"[0-9]{1,12}")
HEADERS = MappingProxyType({SIGNATURE_HEADER: SIGNATURE, TIMESTAMP_HEADER: TIMESTAMP})
USER_ID = re.compile(r"[0-9]{1,20}")

# Discord's event types (topics/webhook-events) and what the framework does with them.
KINDS = {"APPLICATION_DEAUTHORIZED": "removed", "APPLICATION_AUTHORIZED": "authorized"}


def _hex(value, length):
    if not value or len(value) != length or not set(value) <= HEX:
        return None
    return bytes.fromhex(value)


def _stamp(headers):
    """The signed timestamp header when it has its shape (1–12 ASCII digits), else None."""
    stamp = headers.get(TIMESTAMP_HEADER)
    return stamp if isinstance(stamp, str) and TIMESTAMP.fullmatch(stamp) else None


def event_verify(headers, body, public_key, *, now=None):
    """Refuse (EventRefused) a delivery whose signature or age is wrong."""
    signature = _hex(headers.get(SIGNATURE_HEADER), 128)
    stamp = _stamp(headers)
    key = _hex(public_key, 64)
    if key is None:
        raise EventRefused("No public key is stored (publicKey), so no event can be verified.")
    if signature is None or stamp is None:
        raise EventRefused("The signature headers are missing or malformed.")
    if abs((time.time() if now is None else now) - int(stamp)) > MAX_AGE:
        raise EventRefused("The event's timestamp is more than five minutes off.")
    try:
        Ed25519PublicKey.from_public_bytes(key).verify(signature, stamp.encode() + body)
    except (InvalidSignature, ValueError):
        raise EventRefused("The signature does not match the public key.") from None


def event_key(headers):
    """The SHA-256 of the signature's 64 bytes: Discord's events carry no id.

    The bytes, not the header's text: the same signature written in capitals
    verifies too, and must not pass for another delivery.
    """
    return hashlib.sha256(_hex(headers.get(SIGNATURE_HEADER), 128) or b"").hexdigest()


def _when(value):
    """An ISO 8601 time as an aware datetime (UTC when it names no offset); None when it is not one."""
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=timezone.utc)


def _signed_at(headers):
    stamp = _stamp(headers)
    try:
        return datetime.fromtimestamp(int(stamp), tz=timezone.utc) if stamp is not None else None
    except (OverflowError, ValueError, OSError):
        return None


def event_read(headers, body):
    """The event a verified delivery carries, timed by the body's ``event.timestamp``, else the signed header."""
    signed_at = _signed_at(headers)
    try:
        payload = json.loads(body)
    except ValueError:
        return ProviderEvent("other", name="(not JSON)", time=signed_at)
    if not isinstance(payload, dict):
        return ProviderEvent("other", name="(not an object)", time=signed_at)
    if payload.get("type") == 0:
        return ProviderEvent("ping", name="PING", time=signed_at)
    event = payload.get("event") if isinstance(payload.get("event"), dict) else {}
    name = event.get("type") if isinstance(event.get("type"), str) else "(unnamed)"
    data = event.get("data") if isinstance(event.get("data"), dict) else {}
    user = data.get("user") if isinstance(data.get("user"), dict) else {}
    uid = user.get("id")
    uids = (uid,) if isinstance(uid, str) and USER_ID.fullmatch(uid) else ()
    kind = KINDS.get(name, "other")
    return ProviderEvent(
        kind if uids or kind == "other" else "other", uids=uids, name=name[:60],
        time=_when(event.get("timestamp")) or signed_at,
    )
