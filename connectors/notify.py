"""The end user is told by email when an account of theirs needs reconnecting.

Sent on the account_needs_reconnect signal, so once per change: an account
that already needs a reconnect is not marked again until it is reconnected.
The mail names the account and links to the accounts page; it never holds a
token. A mail that cannot be sent is logged, and whatever marked the account
(a sweep, an event's answer) goes on.
"""

import logging

from django.conf import settings
from django.core.mail import send_mail
from django.dispatch import receiver
from django.urls import reverse

from .signals import account_needs_reconnect

logger = logging.getLogger("connectors.notify")


@receiver(account_needs_reconnect, dispatch_uid="connectors.notify.reconnect_mail")
def reconnect_mail(sender, *, account, connector, reason, **kwargs):
    address = account.user.email
    if not address:
        logger.info("account %s needs a reconnect; its user has no email address to tell", account.pk)
        return
    name = account.display_name or account.username or account.uid
    link = settings.PUBLIC_BASE_URL + reverse("accounts")
    body = (
        f"Hello {account.user.get_username()},\n\n"
        f"Your {connector.name} account {name} needs reconnecting: {reason}\n\n"
        f"Reconnect it here: {link}\n"
    )
    try:
        send_mail(f"Reconnect your {connector.name} account {name}", body, None, [address])
    except Exception as error:  # noqa: BLE001 (any mail failure is logged; the caller goes on)
        logger.warning("could not email the user of account %s (%s)", account.pk, type(error).__name__)
        return
    logger.info("emailed the user of account %s: it needs a reconnect", account.pk)
