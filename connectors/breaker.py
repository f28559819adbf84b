"""A circuit breaker on refreshes, shared by every process through Django's cache.

A provider with rotating refresh tokens carries out a refresh whether or not
its answer reaches us: each refresh that times out may have cost the
account. So after REFRESH_BREAKER_THRESHOLD timeouts or 5xx answers in a row
(from any process), refreshes of that connector stop everywhere for
REFRESH_BREAKER_COOLDOWN seconds: a slow spell then costs a bounded handful
of accounts, not all of them.

Faults are counted with ``cache.add`` on numbered keys (each fault takes the
next free number, whichever process records it); a success clears them.
Nothing is kept in process memory.
"""

import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone

from django.conf import settings
from django.core.cache import caches

from .cache import after_answer, before_call, cache_fail_open
from .exceptions import CircuitOpen, ProviderError, ProviderUnavailable, RateLimited

logger = logging.getLogger("connectors.breaker")


def _clock_time(epoch):
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%H:%M:%S UTC")


@dataclass(frozen=True)
class BreakerState:
    open: bool
    # Epoch seconds until which refreshes are paused (0 when closed).
    until: float
    # Faults in a row counted so far.
    failures: int

    def describe(self):
        if self.open:
            return f"open: refreshes are paused until {_clock_time(self.until)}"
        return f"closed ({self.failures} timeout(s) or server error(s) in a row)"


class Breaker:
    """The refresh breaker of one connector (``name``: its service id)."""

    def __init__(self, name, *, cache_alias="default", clock=time.time):
        self.name = name
        self.cache_alias = cache_alias
        self.clock = clock

    @property
    def cache(self):
        return caches[self.cache_alias]

    def _key(self, *parts):
        return ":".join(("breaker", self.name, *parts))

    @property
    def threshold(self):
        return settings.REFRESH_BREAKER_THRESHOLD

    @property
    def cooldown(self):
        return settings.REFRESH_BREAKER_COOLDOWN

    def _fault_keys(self):
        return [self._key("fault", str(number)) for number in range(self.threshold)]

    def state(self):
        known = self.cache.get_many([self._key("until"), *self._fault_keys()])
        until = known.get(self._key("until"), 0.0)
        failures = sum(1 for key in self._fault_keys() if key in known)
        is_open = until > self.clock()
        return BreakerState(open=is_open, until=until if is_open else 0.0, failures=failures)

    def check(self, connector_name):
        """Raise CircuitOpen, without calling the provider, while the breaker is open.

        It reads, in the same go, whether faults are being counted, so that
        ``succeeded`` costs nothing in the usual case.
        """
        until_key, first_fault = self._key("until"), self._fault_keys()[0]
        known = self.cache.get_many([until_key, first_fault])
        self._counting = first_fault in known
        until = known.get(until_key, 0.0)
        wait = until - self.clock()
        if wait > 0:
            raise CircuitOpen(
                f"{connector_name} is unavailable: {self.threshold} refreshes in a row timed out "
                f"or failed, so refreshes are paused until {_clock_time(until)}. Stored tokens "
                "are unchanged.",
                retry_after=wait,
            )

    @contextmanager
    def watching(self, connector_name):
        """Around one call to the provider: refused while open, and told how the call went.

        A rate limit says nothing of the provider's health; any other answer
        in time closes the count, a timeout or 5xx adds to it.
        """
        with before_call("the refresh breaker"):
            self.check(connector_name)
        try:
            yield
        except RateLimited:
            raise
        except ProviderUnavailable:
            with after_answer("counting a fault for the refresh breaker"):
                self.failed()
            raise
        except ProviderError:
            with after_answer("the refresh breaker's bookkeeping"):
                self.succeeded()
            raise
        with after_answer("the refresh breaker's bookkeeping"):
            self.succeeded()

    def succeeded(self):
        """An answer in time: the count of faults in a row starts again."""
        counting = getattr(self, "_counting", None)
        if counting is None:
            counting = self.cache.get(self._fault_keys()[0]) is not None
        if counting:
            self.cache.delete_many(self._fault_keys())

    def failed(self):
        """A timeout or a 5xx; the one that makes THRESHOLD in a row opens the breaker.

        Each fault takes the next free number with ``add``, whichever process
        records it, so two at once are counted as two.
        """
        for key in self._fault_keys():
            if self.cache.add(key, 1, self.cooldown * 10):
                if key != self._fault_keys()[-1]:
                    return
                break
        self.trip()

    def trip(self):
        until = self.clock() + self.cooldown
        self.cache.set(self._key("until"), until, self.cooldown + 1)
        self.cache.delete_many(self._fault_keys())
        logger.warning(
            "%s: %s refreshes in a row timed out or failed; refreshes pause for %s s everywhere",
            self.name, self.threshold, self.cooldown,
        )


def pause_notices():
    """What to tell people about every connector whose refreshes are paused now (one read for all)."""
    from .registry import registry

    breakers = [(connector, Breaker(connector.service_id)) for connector in registry]
    if not breakers:
        return []
    # A page that only shows notices still renders while the cache is down.
    known = cache_fail_open(
        "the notice of paused refreshes", breakers[0][1].cache.get_many,
        [breaker._key("until") for _, breaker in breakers], default={},
    )
    notices = []
    for connector, breaker in breakers:
        until = known.get(breaker._key("until"), 0.0)
        if until > breaker.clock():
            notices.append(
                f"{connector.name} is unavailable: several refreshes in a row timed out or "
                f"failed, so refreshes are paused until {_clock_time(until)}. Accounts are kept "
                "as they are and refreshed after that."
            )
    return notices
