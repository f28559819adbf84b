"""Events the provider sends to /webhooks/<provider>/events: verified, then acted on.

The provider's signature is checked before the body is read; an event that
is not proven gets nothing but a refusal. Acting on one is quick (a few row
updates), since providers give the endpoint a few seconds to answer.
"""

import logging

from django.views.decorators.debug import sensitive_variables

from .accounts import accounts_removed_at_provider
from .config import config_values
from .exceptions import EncryptionKeyError, EventRefused

logger = logging.getLogger("connectors.events")

# Longer bodies are refused before they are verified.
MAX_EVENT_BYTES = 64 * 1024


@sensitive_variables("values")
def event_take(*, connector, headers, body):
    """Verify and act on one delivery; raises EventRefused for one that is not proven.

    Returns the ProviderEvent, for the caller's answer.
    """
    if len(body) > MAX_EVENT_BYTES:
        raise EventRefused("The event is too large.")
    try:
        values = config_values(connector.service_id)
    except EncryptionKeyError:
        raise EventRefused("The stored configuration cannot be read.") from None
    connector.event_verify(headers, body, values)
    event = connector.event_read(body)
    if event.kind == "removed":
        changed = accounts_removed_at_provider(
            connector=connector, uids=event.uids, reason=connector.removed_reason
        )
        logger.info("%s event %s: %s account(s) now need a reconnect", connector.name, event.name, changed)
    elif event.kind == "authorized":
        logger.info("%s event %s for user(s) %s recorded", connector.name, event.name, ", ".join(event.uids))
    elif event.kind != "ping":
        logger.info("%s event %s ignored", connector.name, event.name or "(unnamed)")
    return event
