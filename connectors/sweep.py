"""Refresh every account whose token expires soon, for ``manage.py refresh_tokens``.

Meant to run from cron on several hosts at once: each account is refreshed
through ``account_refresh`` with ``skip_locked``, so an account another run
holds is skipped rather than waited for, and one it already refreshed is
found fresh under the lock and left alone. Candidates are read as primary
keys in keyset pages and handed to the workers through a bounded queue, so
memory stays flat however many accounts there are.
"""

import logging
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from django.db import connection
from django.utils import timezone

from .exceptions import ConnectorError, NeedsReconnect, NotConfigured, ProviderError
from .models import ConnectedAccount, rows_by_pk
from .tokens import account_refresh

logger = logging.getLogger("connectors.sweep")

REFRESHED, SKIPPED, FAILED, NEEDS_RECONNECT = "refreshed", "skipped", "failed", "needs_reconnect"


@dataclass
class Summary:
    refreshed: int = 0
    skipped: int = 0
    failed: int = 0
    needs_reconnect: int = 0

    @property
    def done(self):
        return self.refreshed + self.skipped + self.failed + self.needs_reconnect

    def add(self, outcome):
        setattr(self, outcome, getattr(self, outcome) + 1)

    def line(self):
        return (
            f"refreshed {self.refreshed}, skipped {self.skipped}, "
            f"failed {self.failed}, needs reconnect {self.needs_reconnect}"
        )


def due_queryset(*, within):
    """Active accounts with an expiry inside the window; accounts without one never expire."""
    return ConnectedAccount.objects.filter(
        status=ConnectedAccount.Status.ACTIVE,
        expires_at__isnull=False,
        expires_at__lte=timezone.now() + within,
    )


def due_accounts(*, within, batch_size=200, fields=("pk",)):
    """Yield ``fields`` of each due account, a keyset page of ``batch_size`` at a time.

    A page is not thrown off by accounts the sweep refreshes (and so takes
    out of the window) while it reads the next.
    """
    return rows_by_pk(due_queryset(within=within), fields, batch_size=batch_size)


def refresh_due(*, within, workers=4, batch_size=200, on_progress=None):
    """Refresh the accounts due within ``within`` (a timedelta); return the Summary.

    ``on_progress(summary)`` is called after each account, one call at a time.
    Without row locks (SQLite) every refresh holds the database's single
    write lock, so more workers would only queue on it: there the accounts
    are refreshed one after another in the calling thread.
    """
    margin = within.total_seconds()
    summary = Summary()
    if workers == 1 or not connection.features.has_select_for_update:
        for (pk,) in due_accounts(within=within, batch_size=batch_size):
            summary.add(_refresh_one(pk, margin=margin))
            if on_progress is not None:
                on_progress(summary)
        return summary
    lock = threading.Lock()
    stop = threading.Event()
    # Bounded, so reading never runs more than a page ahead of refreshing;
    # never below `workers`, so that every worker's end marker always fits.
    work = queue.Queue(maxsize=max(batch_size, workers))

    def worker():
        try:
            while True:
                pk = work.get()
                if pk is None or stop.is_set():
                    return
                outcome = _refresh_one(pk, margin=margin)
                with lock:
                    summary.add(outcome)
                    if on_progress is not None:
                        on_progress(summary)
        except BaseException:
            stop.set()
            _drain(work)
            raise
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="refresh-tokens") as pool:
        running = [pool.submit(worker) for _ in range(workers)]
        try:
            for (pk,) in due_accounts(within=within, batch_size=batch_size):
                if stop.is_set():
                    break
                work.put(pk)
        except BaseException:
            stop.set()
            raise
        finally:
            if stop.is_set():
                _drain(work)
            for _ in running:
                work.put(None)
        for future in running:
            future.result()
    return summary


def _drain(work):
    while True:
        try:
            work.get_nowait()
        except queue.Empty:
            return


def _refresh_one(pk, *, margin):
    """One account's outcome; no error escapes, so one bad account never stops the sweep."""
    try:
        result = account_refresh(ConnectedAccount(pk=pk), margin=margin, skip_locked=True)
    except NeedsReconnect:
        return NEEDS_RECONNECT
    except (ProviderError, NotConfigured):
        # account_refresh has logged it and recorded it on the account.
        return FAILED
    except ConnectorError as error:
        logger.warning("could not refresh account %s: %s", pk, error)
        return FAILED
    except Exception:
        logger.exception("could not refresh account %s", pk)
        return FAILED
    if result is None or not result.refreshed:
        return SKIPPED
    return REFRESHED
