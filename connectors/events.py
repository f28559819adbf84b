"""Events the provider sends to /webhooks/<provider>/events: verified, taken once, then acted on.

The provider's signature headers are read strictly, against the shapes its
connector declares (``event_headers``), before anything else reads them and
before the body is read; then the signature is checked. An event that is not
proven gets nothing but a refusal (401), never a 500. A proven delivery is
remembered (EventDelivery, for EVENT_MEMORY) in the transaction that acts on
it, so the same delivery posted again changes nothing. Acting on one is quick
(a few row updates), since providers give the endpoint a few seconds to answer.
"""

import hashlib
import logging
import re
from datetime import timedelta

from django.db import DatabaseError, IntegrityError, transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from .accounts import accounts_removed_at_provider
from .config import config_values
from .exceptions import EncryptionKeyError, EventRefused
from .models import EventDelivery

logger = logging.getLogger("connectors.events")

# Longer bodies are refused before they are verified.
MAX_EVENT_BYTES = 64 * 1024
# How long a delivery taken is remembered: as long as its signature can be
# accepted, on either side of our clock (five minutes old to five minutes
# ahead make ten).
EVENT_MEMORY = timedelta(minutes=10)
KEY_LENGTH = EventDelivery._meta.get_field("key").max_length
# A Content-Length as the endpoint takes it: ASCII digits, no more of them
# than MAX_EVENT_BYTES has (Django reads it with int(), which refuses "²"
# and 4,301 digits alike).
CONTENT_LENGTH = re.compile(r"[0-9]{1,%d}" % len(str(MAX_EVENT_BYTES)))


def event_headers_check(connector, headers):
    """Refuse (EventRefused) a delivery whose signature headers do not have the declared shapes.

    Every header of the connector's ``event_headers`` must be there, ASCII,
    and match its pattern in full; the header's value is never repeated in
    the refusal (it is the caller's, not ours to log). Runs before anything
    else reads the headers: ``event_verify`` and ``event_read`` only ever
    see values of the declared shape.
    """
    for name, pattern in connector.event_headers.items():
        value = headers.get(name)
        if not isinstance(value, str) or not value.isascii() or pattern.fullmatch(value) is None:
            raise EventRefused(f"The {name} header is missing or malformed.")


def event_length_check(content_length):
    """Refuse (EventRefused) a delivery whose Content-Length is malformed or over MAX_EVENT_BYTES.

    Read before the body is, so that a long or a lying body is never read:
    Django's own reading would take ``int()`` of any text (a 500 for "²").
    None or "" (no Content-Length) passes; the body's length is checked
    again once read.
    """
    if not content_length:
        return
    if CONTENT_LENGTH.fullmatch(content_length) is None or int(content_length) > MAX_EVENT_BYTES:
        raise EventRefused("The event is too large, or its Content-Length is malformed.")


@sensitive_variables("values")
def event_take(*, connector, headers, body, now=None):
    """Verify, take once and act on one delivery; raises EventRefused for one that is not proven.

    Returns the ProviderEvent, for the caller's answer; a delivery taken
    already is answered the same way, and changes nothing. The signature
    headers' shapes are checked first (``event_headers_check``), whoever
    calls.
    """
    event_headers_check(connector, headers)
    if len(body) > MAX_EVENT_BYTES:
        raise EventRefused("The event is too large.")
    try:
        values = config_values(connector.service_id)
    except EncryptionKeyError:
        raise EventRefused("The stored configuration cannot be read.") from None
    connector.event_verify(headers, body, values)
    event = connector.event_read(headers, body)
    key = delivery_key(connector.event_key(headers, body, event))
    now = now or timezone.now()
    deliveries_forget(now=now)
    with transaction.atomic():
        if not _first_delivery(connector, key, now):
            logger.info("%s event %s taken already (delivery %s): nothing changes",
                        connector.name, event.name or "(unnamed)", key[:16])
            return event
        _act(connector, event)
    return event


def delivery_key(key):
    """A connector's ``event_key`` as the column keeps it: a longer one as its SHA-256."""
    if not isinstance(key, str) or not key:
        raise TypeError("event_key must return non-empty text")
    return key if len(key) <= KEY_LENGTH else hashlib.sha256(key.encode()).hexdigest()


def _first_delivery(connector, key, now):
    """Remember the delivery; False when it was taken already (the unique constraint says so).

    Two identical deliveries at once: the second insert waits for the first
    transaction, and fails once that one commits; no other delivery waits.
    """
    try:
        with transaction.atomic():
            EventDelivery.objects.create(service_id=connector.service_id, key=key, received_at=now)
    except IntegrityError:
        return False
    return True


def _act(connector, event):
    if event.kind == "removed":
        changed = accounts_removed_at_provider(
            connector=connector, uids=event.uids, reason=connector.removed_reason, event_time=event.time
        )
        logger.info("%s event %s: %s account(s) now need a reconnect", connector.name, event.name, changed)
    elif event.kind == "authorized":
        logger.info("%s event %s for user(s) %s recorded", connector.name, event.name, ", ".join(event.uids))
    elif event.kind != "ping":
        logger.info("%s event %s ignored", connector.name, event.name or "(unnamed)")


def deliveries_forget(*, now):
    """Forget the deliveries taken more than EVENT_MEMORY before ``now``; how many.

    One DELETE on the indexed ``received_at``, on every proven delivery and
    in a transaction of its own, so it holds no lock while an event is acted
    on. A failure is logged, never raised: the next delivery tries again.
    """
    try:
        with transaction.atomic():
            forgotten, _ = EventDelivery.objects.filter(received_at__lt=now - EVENT_MEMORY).delete()
    except DatabaseError as error:
        logger.warning("could not forget old event deliveries (%s)", type(error).__name__)
        return 0
    return forgotten
