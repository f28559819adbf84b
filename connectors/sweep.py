"""Refresh every account whose token expires soon, for ``manage.py refresh_tokens``.

Meant to run from cron on several hosts at once: each account is refreshed
through ``account_refresh`` with ``skip_locked``, so an account another run
holds is skipped rather than waited for, and one another run refreshed
within the last minute (RECENT) is left alone, however wide ``--within``
is. Requests keep the pace every process shares (``connectors.ratelimit``);
an account the rate limit still held back goes back in this run's queue, to
be tried again when the provider allows, until the run's deadline. Only
then does it count as failed. Candidates are read as primary keys in keyset
pages and handed to the workers through a bounded queue, so memory stays
flat however many accounts there are.

A refresh whose answer is lost may have cost its account (the provider
rotated the tokens anyway), so a run starts carefully: one refresh in
flight, one more each time an answer comes back in time, back to one after
a timeout or a 5xx. When the refresh breaker opens (``connectors.breaker``)
the run stops at once and says why.
"""

import heapq
import logging
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta

from django.db import connection, connections
from django.db.models import Exists, OuterRef
from django.utils import timezone

from .exceptions import (
    CircuitOpen,
    ConnectorError,
    CredentialsRefused,
    MarkHeld,
    NeedsReconnect,
    NotConfigured,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    ServiceUnavailable,
)
from .models import ConnectedAccount, HeldMark, rows_by_pk
from .registry import registry
from .tokens import account_refresh

logger = logging.getLogger("connectors.sweep")

REFRESHED, SKIPPED, FAILED, NEEDS_RECONNECT = "refreshed", "skipped", "failed", "needs_reconnect"
# The brake on mass marking held the account's needs-reconnect back (connectors.brake).
HELD = "held"
# Outcomes a worker acts on before counting: a 429 to wait out, a timeout or
# 5xx (counted as failed, and the careful start narrows again), the breaker.
RATE_LIMITED, FAULT, PAUSED = "rate_limited", "fault", "paused"
# The provider refused the app's own credentials: the run stops calling that connector.
CREDENTIALS_REFUSED = "credentials_refused"
# An account refreshed this recently was another run's work.
RECENT = timedelta(minutes=1)
DEFAULT_MAX_TIME = timedelta(minutes=15)
# How often an idle worker looks for an account to try again, and the run's deadline.
IDLE = 0.2


@dataclass
class Summary:
    refreshed: int = 0
    skipped: int = 0
    failed: int = 0
    needs_reconnect: int = 0
    # Refused, but the brake on mass marking held the mark back (connectors.brake).
    held: int = 0
    # The connectors whose own credentials the provider refused (names); the
    # run stopped calling each after its first refusal, and touched no account.
    credentials_refused: list = field(default_factory=list)
    # Times an account went back in the queue because of the rate limit.
    retried: int = 0
    # The deadline came with accounts still to do, or the rate limit would
    # have held one back past it.
    timed_out: bool = False
    # Why the run stopped early: the breaker's message (connectors.breaker),
    # or our own cache's or database's failure.
    stopped_by: str = ""

    @property
    def done(self):
        return self.refreshed + self.skipped + self.failed + self.needs_reconnect + self.held

    def add(self, outcome):
        setattr(self, outcome, getattr(self, outcome) + 1)

    def line(self):
        line = (
            f"refreshed {self.refreshed}, skipped {self.skipped}, "
            f"failed {self.failed}, needs reconnect {self.needs_reconnect}"
        )
        if self.held:
            line += f", held back {self.held}"
        if self.retried:
            line += f" ({self.retried} waited out a rate limit)"
        return line


def due_queryset(*, within):
    """Active accounts with an expiry inside the window, not refreshed within RECENT, not held.

    Accounts without an expiry never expire. An account whose mark the brake
    holds (connectors.brake) waits for the operator: refreshing it would only
    be refused again.
    """
    now = timezone.now()
    return ConnectedAccount.objects.filter(
        ~Exists(HeldMark.objects.filter(account_id=OuterRef("pk"))),
        status=ConnectedAccount.Status.ACTIVE,
        expires_at__isnull=False,
        expires_at__lte=now + within,
    ).exclude(refreshed_at__gt=now - RECENT)


def due_accounts(*, within, batch_size=200, fields=("pk",)):
    """Yield ``fields`` of each due account, a keyset page of ``batch_size`` at a time.

    A page is not thrown off by accounts the sweep refreshes (and so takes
    out of the window) while it reads the next.
    """
    return rows_by_pk(due_queryset(within=within), fields, batch_size=batch_size)


def refresh_due(*, within, workers=4, batch_size=200, max_time=DEFAULT_MAX_TIME, on_progress=None):
    """Refresh the accounts due within ``within`` (a timedelta); return the Summary.

    ``on_progress(summary)`` is called after each account, one call at a time.
    No refresh starts after ``max_time`` (a timedelta); accounts the rate
    limit held back until then count as failed, and ``summary.timed_out``
    says whether any were left. Without row locks (SQLite) every refresh
    holds the database's single write lock, so more workers would only queue
    on it: there the accounts are refreshed one after another in the
    calling thread.
    """
    run = _Run(margin=within.total_seconds(), max_time=max_time, workers=workers, on_progress=on_progress)
    pages = due_accounts(within=within, batch_size=batch_size)
    if workers == 1 or not connection.features.has_select_for_update:
        run.work(lambda timeout: next(pages, (None,))[0])
        return run.summary
    # Bounded, so reading never runs more than a page ahead of refreshing;
    # never below `workers`, so that every worker's end marker always fits.
    work = queue.Queue(maxsize=max(batch_size, workers))

    def take(timeout):
        try:
            return work.get(timeout=timeout)
        except queue.Empty:
            return _WAIT

    def worker():
        try:
            run.work(take)
        except BaseException:
            run.stop.set()
            raise
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="refresh-tokens") as pool:
        running = [pool.submit(worker) for _ in range(workers)]
        try:
            for (pk,) in pages:
                if not run.put(work, pk):
                    # The workers, at the deadline, count what is left (_Run._give_up).
                    break
        except BaseException:
            run.stop.set()
            raise
        finally:
            if run.stopped():
                _drain(work)
            for _ in running:
                run.put(work, None, always=True)
        for future in running:
            future.result()
    return run.summary


# What a worker's source answers when it has no account right now but may later.
_WAIT = object()


class _Run:
    """What the workers of one sweep share: accounts to try again, the deadline, the Summary."""

    def __init__(self, *, margin, max_time, workers, on_progress):
        self.margin = margin
        self.deadline = time.monotonic() + max_time.total_seconds()
        self.on_progress = on_progress
        self.summary = Summary()
        self.stop = threading.Event()
        self.lock = threading.Lock()
        # (monotonic time it may be tried again, pk)
        self.retries = []
        # Service ids whose credentials the provider refused in this run.
        self.refused = frozenset()
        # The careful start: refreshes in flight, and how many may be. A
        # refresh whose answer is lost may have cost its account, so a run
        # starts with one and widens to `workers` only as answers come back
        # in time; a timeout or a 5xx brings it back to one.
        self.workers = workers
        self.in_flight = 0
        self.allowed = 1
        self.room = threading.Condition(self.lock)

    def stopped(self):
        return self.stop.is_set() or time.monotonic() >= self.deadline

    def put(self, work, item, *, always=False):
        """Hand ``item`` to the workers; False if the run stopped first."""
        while True:
            try:
                work.put(item, timeout=IDLE)
                return True
            except queue.Full:
                if self.stopped():
                    if not always:
                        return False
                    # The workers are gone or going: make room for the end markers.
                    _drain(work)

    def work(self, take):
        """Refresh accounts from ``take(timeout)`` and the retries until both are done."""
        new_done = False
        while True:
            pk, new_done = self._next(take, new_done)
            if pk is None:
                return
            if not self._enter():
                with self.lock:
                    # Stopped while waiting for room: this account is left too.
                    self._give_up(new_done=False)
                return
            outcome, wait = FAILED, 0
            try:
                outcome, wait = _refresh_one(pk, margin=self.margin, refused=self.refused)
                if outcome == CREDENTIALS_REFUSED:
                    # Before this refresh makes room: the next one must already skip that connector.
                    with self.lock:
                        self._refused(wait)
                    outcome = SKIPPED
            finally:
                self._leave(outcome)
            with self.lock:
                if outcome == PAUSED:
                    self.summary.stopped_by = wait
                    self.stop.set()
                    return
                if outcome == FAULT:
                    outcome = FAILED
                if outcome == RATE_LIMITED:
                    again = time.monotonic() + wait
                    if again < self.deadline:
                        heapq.heappush(self.retries, (again, pk))
                        self.summary.retried += 1
                        continue
                    outcome = FAILED
                    self.summary.timed_out = True
                self.summary.add(outcome)
                if self.on_progress is not None:
                    self.on_progress(self.summary)

    def _refused(self, error):
        """The first refusal of a connector's credentials in this run: one ERROR line, and no more calls."""
        if error.service_id in self.refused:
            return
        self.refused = self.refused | {error.service_id}
        name = registry.get(error.service_id).name
        self.summary.credentials_refused.append(name)
        logger.error(
            "%s refused the client credentials (%s): no account was touched, and this run calls %s no more. "
            "Correct them in the admin (Test credentials), then run again.", name, error, name,
        )

    def _next(self, take, new_done):
        """The next account: a retry that is due, else a new one; (None, _) when none is left."""
        while True:
            now = time.monotonic()
            with self.lock:
                if self.stopped():
                    self._give_up(new_done)
                    return None, new_done
                if self.retries and self.retries[0][0] <= now:
                    return heapq.heappop(self.retries)[1], new_done
                wait = min(IDLE, self.retries[0][0] - now) if self.retries else IDLE
                if new_done and not self.retries:
                    return None, new_done
            if new_done:
                time.sleep(wait)
                continue
            pk = take(wait)
            if pk is None:
                new_done = True
            elif pk is not _WAIT:
                return pk, new_done

    def _give_up(self, new_done):
        """At the deadline: what waits for the rate limit has failed."""
        if not self.summary.stopped_by:
            if self.retries or not new_done:
                self.summary.timed_out = True
            for _ in self.retries:
                self.summary.add(FAILED)
        self.retries.clear()

    def _enter(self):
        """Wait for room among the refreshes in flight; False if the run stopped meanwhile."""
        with self.room:
            while self.in_flight >= self.allowed:
                if self.stopped():
                    return False
                self.room.wait(IDLE)
            self.in_flight += 1
            return True

    def _leave(self, outcome):
        with self.room:
            self.in_flight -= 1
            if outcome == FAULT:
                self.allowed = 1
            elif outcome in (REFRESHED, NEEDS_RECONNECT, HELD):
                self.allowed = min(self.workers, self.allowed + 1)
            self.room.notify_all()


def _drain(work):
    while True:
        try:
            work.get_nowait()
        except queue.Empty:
            return


def _refresh_one(pk, *, margin, refused):
    """One account's outcome and, rate limited, how long to wait (paused: why; refused: the error); no error escapes.

    An account of a connector in ``refused`` is skipped without a call.
    """
    try:
        result = account_refresh(
            ConnectedAccount(pk=pk), margin=margin, skip_locked=True, min_age=RECENT, max_wait=0,
            skip_services=refused,
        )
    except CredentialsRefused as error:
        return CREDENTIALS_REFUSED, error
    except NeedsReconnect:
        return NEEDS_RECONNECT, 0
    except MarkHeld:
        # Before ServiceUnavailable: the provider answered; nothing of ours failed.
        return HELD, 0
    except RateLimited as limited:
        return RATE_LIMITED, 1.0 if limited.retry_after is None else limited.retry_after
    except CircuitOpen as error:
        return PAUSED, str(error)
    except ServiceUnavailable as error:
        # Our cache or database: every other account would fail alike.
        return PAUSED, f"{error} Check the cache (CACHE_URL) and the database (DATABASE_URL)."
    except ProviderUnavailable:
        return FAULT, 0
    except (ProviderError, NotConfigured):
        # account_refresh has logged it and recorded it on the account.
        return FAILED, 0
    except ConnectorError as error:
        logger.warning("could not refresh account %s: %s", pk, error)
        return FAILED, 0
    except Exception:
        logger.exception("could not refresh account %s", pk)
        return FAILED, 0
    if result is None or not result.refreshed:
        return SKIPPED, 0
    return REFRESHED, 0
