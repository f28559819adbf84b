"""The brake on mass marking: a provider, or a wrong setting, refusing every grant at once
must not mark every account and mail every person.

Within any MARK_BRAKE_WINDOW (10 minutes) at most ``settings.MARK_BRAKE``
(25) accounts of one connector are marked needs-reconnect by refused
refreshes and grant checks. The count is the database's (accounts of that
connector marked so, and still marked, within the window), taken under the
lock of the connector's ConnectorConfig row inside the marking transaction,
so that every process and host keeps one count (on SQLite every write
transaction is IMMEDIATE: they are serialized anyway).

Beyond it a mark is *held*: a HeldMark row says which account, why, the
provider's words and when; the account keeps its status, no signal goes
and no mail. The sweep skips held accounts, a refresh of one raises
MarkHeld (503 in the API) without calling the provider, the accounts page
says "being checked". An operator then confirms the held marks (they are
applied, signalled and mailed) or dismisses them (a later refusal may hold
again): ``marks_confirm``/``marks_dismiss``, behind the admin's buttons and
``manage.py confirm_marks``.

A provider's verified event (the person removed the app) is the person's
own act: it is never counted and never held.
"""

import enum
import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Min
from django.dispatch import receiver

from .exceptions import MarkHeld
from .models import ConnectedAccount, ConnectorConfig, HeldMark
from .signals import account_connected

logger = logging.getLogger("connectors.brake")

MARK_BRAKE_WINDOW = timedelta(minutes=10)
# What marks count against the brake (and may be held): the provider's
# refusals, never the person's own act.
BRAKED = (ConnectedAccount.MarkedBy.REFRESH, ConnectedAccount.MarkedBy.CHECK)


class Mark(enum.Enum):
    """What ``needs_reconnect`` did."""

    # The account already needed a reconnect: nothing changed, nothing sent.
    UNCHANGED = "unchanged"
    # Marked (and signalled once the transaction commits).
    MARKED = "marked"
    # The brake held it back: a HeldMark, the account as it was.
    HELD = "held"

    # True, and 1 in a sum (``changed += needs_reconnect(...)``), only when it marked.
    def __bool__(self):
        return self is Mark.MARKED

    def __radd__(self, other):
        return other + (self is Mark.MARKED)


def brake_engaged(service_id, *, now):
    """Whether the next refusal-made mark of this connector must be held.

    Call inside the transaction that would mark: the connector's
    configuration row stays locked until it ends, so that the count and the
    mark that follows it are one step for every process.
    """
    # No row (nothing configured): nothing to lock; such a connector cannot refresh anyway.
    ConnectorConfig.objects.select_for_update().filter(service_id=service_id).values_list("pk").first()
    marked = ConnectedAccount.objects.filter(
        service_id=service_id,
        status=ConnectedAccount.Status.NEEDS_RECONNECT,
        marked_by__in=BRAKED,
        status_changed_at__gt=now - MARK_BRAKE_WINDOW,
    ).count()
    return marked >= max(0, settings.MARK_BRAKE)


def mark_hold(account, *, connector, reason, error, marked_by, now):
    """Hold ``account``'s mark (its row locked by the caller): keep why, leave its status."""
    error = str(error)[:300]
    HeldMark.objects.update_or_create(
        account=account,
        defaults={
            "service_id": account.service_id,
            "reason": reason[:300],
            "error": error,
            "marked_by": marked_by,
            "held_at": now,
        },
    )
    account.last_error, account.last_error_at = error, now
    account.save(update_fields=["last_error", "last_error_at", "updated_at"])
    logger.warning(
        "held back the needs-reconnect mark of %s account %s of user %s: MARK_BRAKE (%s) accounts of %s were "
        "already marked by refusals within %s minutes (%s)",
        connector.name, account.uid, account.user_id, settings.MARK_BRAKE, connector.service_id,
        _window_minutes(), error,
    )


def mark_dropped(account):
    """The account was marked after all (or reconnected): a held mark of it has nothing left to hold."""
    HeldMark.objects.filter(account_id=account.pk).delete()


def held_check(account):
    """Raise MarkHeld when ``account`` (locked, about to be refreshed) has a held mark: the provider is not asked.

    The one query it costs is paid only by refreshes, never by a token still valid.
    """
    if HeldMark.objects.filter(account_id=account.pk).exists():
        raise MarkHeld(account_id=account.pk)


def marks_held():
    """{service id: (accounts held, the earliest held_at)} of every connector with held marks."""
    rows = HeldMark.objects.values("service_id").annotate(count=Count("pk"), since=Min("held_at"))
    return {row["service_id"]: (row["count"], row["since"]) for row in rows.order_by("service_id")}


def held_problem(count):
    """What refresh_tokens says when its run held marks back; it then exits non-zero."""
    services = list(marks_held())
    service = services[0] if len(services) == 1 else "<service id>"
    which = "" if len(services) == 1 else f" (held now: {', '.join(services) or 'none'})"
    return (
        f"{count} account(s) held back from needs-reconnect: MARK_BRAKE ({settings.MARK_BRAKE}) accounts "
        f"of one connector were already marked by refusals within {_window_minutes()} minutes, which looks "
        "like the provider's fault or a wrong setting. Held accounts keep their status and are not "
        f"refreshed. Once you know, run `manage.py confirm_marks {service}`{which} to mark them and mail "
        f"their users, or `manage.py confirm_marks {service} --dismiss` to drop the held marks."
    )


def _window_minutes():
    return int(MARK_BRAKE_WINDOW.total_seconds() // 60)


def marks_confirm(service_id, *, on_each=None):
    """Apply every held mark of ``service_id`` now, whatever the brake says; how many were applied.

    Each account is marked (and signalled, so its person mailed) as the
    refusal would have marked it, with the reason and the provider's words
    kept; the marks applied then count in the window like any refusal's.
    One short transaction per account, its row locked: a refresh, an event
    or a reconnect meanwhile settles before or after. An account that needs
    a reconnect already loses its held mark without a second signal.
    ``on_each(account)`` is called for each account marked.
    """
    from .accounts import needs_reconnect  # accounts imports this module

    applied = 0
    for pk, account_id in list(HeldMark.objects.filter(service_id=service_id).values_list("pk", "account_id")):
        with transaction.atomic():
            account = ConnectedAccount.objects.select_for_update().filter(pk=account_id).first()
            held = HeldMark.objects.filter(pk=pk).first()
            if account is None or held is None:
                continue
            mark = needs_reconnect(
                account, connector=account.connector, reason=held.reason, error=held.error or held.reason,
                marked_by=held.marked_by, counted=False,
            )
            mark_dropped(account)
        if mark is Mark.MARKED:
            applied += 1
            logger.info("confirmed the held needs-reconnect mark of account %s (%s)", account.pk, service_id)
            if on_each is not None:
                on_each(account)
    return applied


def marks_dismiss(service_id, *, on_each=None):
    """Drop every held mark of ``service_id``; the accounts stay as they are. How many were dropped.

    A later refusal of one of them is counted again, and may be held again.
    ``on_each(account)`` is called for each account whose mark was dropped.
    """
    dropped = 0
    held = (
        HeldMark.objects.filter(service_id=service_id)
        .select_related("account")
        .defer("account__access_token", "account__refresh_token")
    )
    for row in list(held):
        deleted, _ = HeldMark.objects.filter(pk=row.pk).delete()
        if deleted:
            dropped += 1
            if on_each is not None:
                on_each(row.account)
    if dropped:
        logger.info("dismissed %s held needs-reconnect mark(s) of %s", dropped, service_id)
    return dropped


@receiver(account_connected, dispatch_uid="connectors.brake.reconnected")
def _reconnected(sender, *, account, created, **kwargs):
    """A reconnected account holds a new grant: a mark held on the old one has nothing left to hold."""
    if not created:
        mark_dropped(account)
