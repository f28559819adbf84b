"""One pace for every worker, process and host that talks to a provider.

A provider counts requests per bucket on its side, whichever of our
processes sent them, so the pace is kept where all of them see it: Django's
cache (``CACHE_URL``; the database cache by default, on a connection of its
own), never process memory. Who may send is decided only by ``cache.add``,
which exactly one caller wins on every backend; other reads and writes only
carry what the provider said.

- The provider's answers say which bucket a route belongs to, and for the
  window now open: how many requests it takes, how many are left, and when
  it ends (``observe``).
- Within an open window, a request claims one of the requests left (a
  numbered permit, taken with ``add``) and goes at once. When none is left,
  or the window is about to end, it waits for the window to end instead of
  being sent to be refused.
- When a window has ended, one request opens the next one while the others
  wait for its answer to say what the new window allows; so does the first
  request of a route never seen, so that many workers starting at once do
  not all send blind.
- When the provider says to stop (a 429 and its retry_after, a global
  limit), everyone waits until then.

Windows are kept per scope within a bucket: the credential a request is sent
with and the route's major parameters, as a provider counts them.

A scope that is not ``shared`` (one person's token, which only the code
holding that account's row sends with) keeps no window: it honours the
holds, and is held by itself once an answer says it is spent; nothing is
written for it otherwise. What a process keeps for itself (which bucket a
route belongs to, where its last claim ended) only spares it reads and
tries: who may send is still decided in the cache.
"""

import contextvars
import hashlib
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass

from django.core.cache import caches

from .exceptions import RateLimited

# Seconds a request that opens a window (or probes a new route) holds the
# others back at most, and how often they look for its answer meanwhile.
PROBE_TTL = 2
PROBE_POLL = 0.02
# Seconds the pace remembers a route's bucket.
KNOWN_TTL = 86400
# Seconds by which a window must outlive its first description to be noted again.
LATE_END = 0.05
# A window this close to its end gives a permit only while at most half used:
# the request might reach the provider in the next window, which would not count it.
CLOSING = 0.1
# The longest wait for a permit while a caller holds a lock or transaction
# open (see held_briefly); anything longer is waited out after it closes.
HELD_MAX_WAIT = 5.0

_held = contextvars.ContextVar("connectors_pace_held", default=False)
_deadline = contextvars.ContextVar("connectors_pace_deadline", default=None)
_unpaced = contextvars.ContextVar("connectors_pace_skipped", default=False)


@contextmanager
def unpaced():
    """Requests inside go without the shared pace: neither a permit nor the answer's bookkeeping.

    For one request that must not depend on the cache: the revocation of a
    grant we could not store, often because the cache or the database has
    just failed. A single request cannot break a provider's rate limit; a
    429 to it is a failed revocation like any other.
    """
    token = _unpaced.set(True)
    try:
        yield
    finally:
        _unpaced.reset(token)


def is_unpaced():
    return _unpaced.get()


@contextmanager
def held_briefly():
    """Mark code that holds a row lock or a transaction open while it calls a provider.

    Inside, a permit further off than HELD_MAX_WAIT and a 429 are not waited
    for: RateLimited comes back at once, so that the caller can let go of
    what it holds, wait, and try again (SQLite's one write lock would stop
    every other writer meanwhile).
    """
    token = _held.set(True)
    try:
        yield
    finally:
        _held.reset(token)


def is_held():
    return _held.get()


@contextmanager
def waits_within(seconds):
    """Every wait for the provider inside (permits, 429s) ends within ``seconds`` in all.

    A web request uses it (REQUEST_MAX_WAIT): a wait longer than what is left
    raises RateLimited at once, so the person hears that the provider is busy
    long before the worker would be killed.
    """
    token = _deadline.set(time.time() + seconds)
    try:
        yield
    finally:
        _deadline.reset(token)


def allowed_wait(max_wait):
    """How long a wait may last here: ``max_wait``, less inside held_briefly or waits_within."""
    if _held.get():
        max_wait = min(max_wait, HELD_MAX_WAIT)
    deadline = _deadline.get()
    if deadline is not None:
        max_wait = max(0.0, min(max_wait, deadline - time.time()))
    return max_wait


@dataclass(frozen=True)
class Limits:
    """What one answer said of the rate limit; None where it said nothing."""

    bucket: str | None = None
    limit: int | None = None
    remaining: int | None = None
    reset_after: float | None = None
    # The provider's name for the window (its reset time, as sent).
    reset: str | None = None


@dataclass(frozen=True)
class Window:
    """The window of one (bucket, scope) as the provider last described it."""

    name: str
    ends_at: float
    limit: int
    # Requests the provider had counted in it when it was first described.
    used: int


@dataclass(frozen=True)
class Permit:
    """Leave to send one request, and what the pace knew when it gave it."""

    route: str
    scope: str
    # None: the route was unknown and this request probes it; "": no limits.
    bucket: str | None
    window: Window | None = None
    # Whether this request opens a new window (or probes a new route).
    opens: bool = False
    # Whether its scope is shared (see the module's docstring).
    shared: bool = True


def _opened(window):
    """Names the window a request opens the next one after (one key per window and end)."""
    return "-" if window is None else f"{window.name}@{window.ends_at:.2f}"


def _digest(text):
    """Keys are digests: fixed length, safe for every backend, and no credential in them."""
    return hashlib.sha256(text.encode()).hexdigest()[:24]


class Pace:
    """The shared pace of one provider's API (``name``), kept in the cache ``cache_alias``."""

    # Entries this process keeps of its own; past this many it starts afresh.
    LOCAL_ENTRIES = 1024

    def __init__(self, name, *, cache_alias="default", clock=time.time, sleep=time.sleep):
        self.name = name
        self.cache_alias = cache_alias
        self.clock = clock
        self.sleep = sleep
        # The bucket each route was last seen in, so that one read brings
        # everything a permit needs; the cache's answer corrects it.
        self._buckets = {}
        # Where this process's last claim in each window ended.
        self._claimed = {}

    def _remember(self, memo, key, value):
        if len(memo) >= self.LOCAL_ENTRIES:
            memo.clear()
        memo[key] = value

    @property
    def cache(self):
        return caches[self.cache_alias]

    def _key(self, *parts):
        return ":".join(("pace", self.name, *parts))

    def acquire(self, route, scope, *, max_wait, shared=True):
        """Wait until one request on ``route`` may be sent; return its Permit.

        Raises RateLimited, without waiting, when the permit is further off
        than ``max_wait`` seconds (HELD_MAX_WAIT inside ``held_briefly``).
        """
        deadline = self.clock() + allowed_wait(max_wait)
        route_key, hold_all = self._key("route", _digest(route)), self._key("hold")
        scope = _digest(scope)
        while True:
            bucket = self._buckets.get(route)
            keys = [route_key, hold_all]
            if bucket:
                window_key, hold_key, floor_key, hint_key = (
                    self._key(kind, bucket, scope) for kind in ("window", "hold", "floor", "next")
                )
                keys += [window_key, hold_key, floor_key, hint_key] if shared else [hold_key]
            known = self.cache.get_many(keys)
            seen = known.get(route_key)
            if seen != bucket:
                # This process had not seen the route, or the cache says otherwise: read again.
                if seen is None:
                    self._buckets.pop(route, None)
                else:
                    self._remember(self._buckets, route, seen)
                continue
            until = known.get(hold_all, 0.0)
            window = floor = hint = None
            if bucket:
                window, floor, hint = known.get(window_key), known.get(floor_key), known.get(hint_key)
                until = max(until, known.get(hold_key, 0.0))
            now = self.clock()
            if until > now:
                self._wait(until, now, deadline)
                continue
            if bucket == "":
                return Permit(route, scope, "")
            if not shared:
                return Permit(route, scope, bucket, shared=False)
            if bucket is None or window is None or now >= window.ends_at:
                # Nothing known of what is open now: one request finds out.
                if self.cache.add(self._open_key(route, bucket, scope, window), 1, PROBE_TTL):
                    return Permit(route, scope, bucket, window, opens=True)
                self._wait(now + PROBE_POLL, now, deadline)
                continue
            if self._claim(bucket, scope, window, floor, hint, now):
                return Permit(route, scope, bucket, window)
            self._wait(window.ends_at, now, deadline)

    def _open_key(self, route, bucket, scope, window):
        """The claim of the one request that opens what follows ``window`` (a route's first: None)."""
        return self._key("open", bucket or _digest(route), scope, _opened(window))

    def _claim(self, bucket, scope, window, floor, hint, now):
        """Take one of the requests the window has left; False when none is.

        The numbers below ``floor`` are spent; ``hint`` (best effort, not
        atomic) says where the last claim ended that had to pass numbers
        taken by others, and this process remembers where its own ended, so
        that a claim does not try every number before it. The hint is
        written only after such a pass: one process alone writes nothing
        but its permit.

        Close to the window's end a request may reach the provider in the
        next window, which would not count it; only a window at most half
        used then gives a permit, since the next one has room for it.
        """
        first = window.used
        for known in (floor, hint, self._claimed.get((bucket, scope))):
            if known and known[0] == window.name:
                first = max(first, known[1])
        last = window.limit if now < window.ends_at - CLOSING else window.limit // 2
        keep = math.ceil(window.ends_at - now) + 2
        for number in range(first, last):
            if self.cache.add(self._key("permit", bucket, scope, window.name, str(number)), 1, keep):
                self._remember(self._claimed, (bucket, scope), (window.name, number + 1))
                if number > first:
                    self.cache.set(self._key("next", bucket, scope), (window.name, number + 1), keep)
                return True
        return False

    def _wait(self, until, now, deadline):
        if until > deadline:
            raise self._limited(until - now)
        if until > now:
            self.sleep(until - now)

    @staticmethod
    def _limited(wait):
        return RateLimited(
            f"The provider's rate limit allows the next request in {wait:.1f} s; try again then.",
            retry_after=wait,
        )

    def observe(self, permit, limits):
        """Keep what an answer (not a 429) said of its route's bucket and window."""
        route_key = self._key("route", _digest(permit.route))
        if limits.bucket is None:
            if permit.bucket != "":
                self.cache.set(route_key, "", KNOWN_TTL)
                self._remember(self._buckets, permit.route, "")
            self.release(permit)
            return
        bucket = _digest(limits.bucket)
        if permit.bucket != bucket:
            self.cache.set(route_key, bucket, KNOWN_TTL)
            self._remember(self._buckets, permit.route, bucket)
        if not permit.shared:
            if limits.remaining == 0 and limits.reset_after is not None:
                self._hold(self._key("hold", bucket, permit.scope), limits.reset_after)
            return
        described = limits.limit and limits.remaining is not None and limits.reset_after is not None
        if described:
            self._note_window(permit, bucket, limits)
        else:
            self.release(permit)

    def _note_window(self, permit, bucket, limits):
        now = self.clock()
        ends_at = now + limits.reset_after
        name = limits.reset or f"{ends_at:.1f}"
        used = max(0, limits.limit - limits.remaining)
        known = permit.window if permit.bucket == bucket else None
        keep = math.ceil(limits.reset_after) + 2
        if known is None or known.name != name:
            # Several answers may be the first of a window this one's sender had
            # not seen; only the first to arrive describes it.
            first = self.cache.add(self._key("described", bucket, permit.scope, name), 1, keep)
            if first and (known is None or ends_at > known.ends_at):
                window = Window(name=name, ends_at=ends_at, limit=limits.limit, used=used)
                self.cache.set(self._key("window", bucket, permit.scope), window, keep)
        elif ends_at > known.ends_at + LATE_END:
            # The window outlives what its first answer made us expect.
            window = Window(name=name, ends_at=ends_at, limit=known.limit, used=max(known.used, used))
            self.cache.set(self._key("window", bucket, permit.scope), window, keep)
        if limits.remaining == 0:
            # Spent, by us or by someone else sending with the same credential:
            # nobody claims from this window any more.
            self.cache.set(self._key("floor", bucket, permit.scope), (name, limits.limit), keep)

    def release(self, permit):
        """A request that was to open a window (or probe a route) and learnt nothing lets the next one try.

        Only then: after a described answer the key stays until it expires,
        or a request that read the old window a moment late would open the
        new one a second time.
        """
        if permit.opens:
            self.cache.delete(self._open_key(permit.route, permit.bucket, permit.scope, permit.window))

    def refused(self, permit, limits, *, retry_after, is_global):
        """A 429: nobody sends what it covers before ``retry_after`` seconds have passed."""
        if limits.bucket is not None:
            self.observe(permit, limits)
        self.release(permit)
        wait = retry_after if retry_after is not None and retry_after >= 0 else 1.0
        if is_global or (limits.bucket is None and not permit.bucket):
            self._hold(self._key("hold"), wait)
        else:
            bucket = _digest(limits.bucket) if limits.bucket is not None else permit.bucket
            self._hold(self._key("hold", bucket, permit.scope), wait)

    def _hold(self, key, seconds):
        until = self.clock() + seconds
        if self.cache.get(key, 0.0) < until:
            self.cache.set(key, until, math.ceil(seconds) + 1)
