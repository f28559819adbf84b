"""Signals for other code: an account connected, in need of a reconnect, disconnected.

Each is sent once per change, after the transaction that made it commits
(never for a change that rolled back), with ``sender`` the connector's class
and these arguments:

- ``account_connected``: ``account``, ``connector``, ``created`` (False for a
  reconnect of the same identity);
- ``account_needs_reconnect``: ``account``, ``connector``, ``reason``;
- ``account_disconnected``: ``account`` (deleted: its fields are still
  readable, its pk is None), ``account_id``, ``connector``.

A receiver that raises is logged and skipped: a sweep, a callback or an
event's answer never fails for it.
"""

import logging

from django.db import transaction
from django.dispatch import Signal

logger = logging.getLogger("connectors.signals")

account_connected = Signal()
account_needs_reconnect = Signal()
account_disconnected = Signal()


def send_after_commit(signal, connector, **kwargs):
    """Send ``signal`` once the current transaction commits (at once outside one)."""

    def send():
        for receiver, result in signal.send_robust(sender=type(connector), connector=connector, **kwargs):
            if isinstance(result, Exception):
                logger.error(
                    "%s, a receiver of a connectors signal, failed (%s)",
                    getattr(receiver, "__qualname__", receiver), type(result).__name__, exc_info=result,
                )

    transaction.on_commit(send)
