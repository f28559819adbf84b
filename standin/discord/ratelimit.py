"""Discord's rate limits, only under ``/api/v10``.

- Every route has its own bucket, named by an opaque hash in
  ``X-RateLimit-Bucket`` (``bucket_of(kind)``): the token endpoint (all grant
  types) is one, the revocation, ``/users/@me``, ``/users/@me/guilds``,
  ``/oauth2/@me`` and ``/oauth2/applications/@me`` one each, unknown paths
  share one; the bot routes ``GET /guilds/{id}/channels`` and ``POST
  /channels/{id}/messages`` one each. Counters are per (bucket, major
  parameter, Authorization header value): each Bearer token has its own, the
  token endpoint called with HTTP Basic shares one for the application, and
  requests without Authorization (client credentials in the form, say) share
  the empty one; the bot routes count each server or channel (the id in the
  path) apart, as Discord does, under the same bucket name.
- ``rate_limit(n)`` (``--rate-limit``, ``POST /_standin/rate_limit
  {"per_second": n}``) sets the limit of every such counter: a fixed window of
  one second that starts at the first request after the previous one ended.
  Without a limit the headers still count down from 10000 and nothing is
  refused. Beyond the limit: 429 ``{"message": "You are being rate limited.",
  "retry_after": <to the window's end>, "global": false}`` with
  ``X-RateLimit-Scope: user``, ``Retry-After`` (whole seconds, at least 1) and
  the bucket headers at Remaining 0; the request is not carried out.
- ``global_limit(n)`` (``--global-rate-limit``, ``{"global_per_second": n}``)
  is one such window over every API request, checked before the buckets (a
  request it lets through counts even if its bucket then refuses it). Beyond
  it: 429 with ``"global": true``, ``X-RateLimit-Global: true``,
  ``X-RateLimit-Scope: global``, ``Retry-After`` and no bucket headers.
- ``rate_limit_next()`` forces 429s before either check, without using up
  either window; a forced non-global one carries the route's bucket headers
  with Reset-After equal to its retry_after.
- Changing a limit starts fresh windows; ``reset()`` restores the
  constructor's limits. ``count()`` counts every request received, refused or
  not; ``count_429()`` and ``stats()["rate_limited"]`` count the 429 answers
  sent (those from ``fail_next(..., 429)`` included; unknown paths only in the
  total).
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from dataclasses import dataclass

from standin.wire import Answer, json_answer

UNLIMITED_RATE = 10000
RATE_LIMIT_SCOPES = ("user", "global", "shared")
UNKNOWN_ROUTE = "unknown"


def bucket_of(kind: str | None) -> str:
    """The opaque X-RateLimit-Bucket of a request kind's route: every grant type shares the token route's."""
    route = kind.split(".")[0] if kind else UNKNOWN_ROUTE
    return hashlib.sha1(route.encode()).hexdigest()[:16]


def check_rate(per_second: float | None) -> float | None:
    if per_second is not None and (not isinstance(per_second, (int, float)) or per_second < 0
                                   or math.isnan(per_second)):
        raise ValueError(f"a rate limit is a number >= 0 or None, not {per_second!r}")
    return per_second


@dataclass
class _Window:
    """One fixed one-second rate-limit window; it opens at the first request after the last one closed."""

    start: float = 0.0
    used: int = 0

    def roll(self, now: float) -> None:
        if now >= self.start + 1.0:
            self.start, self.used = now, 0

    @property
    def end(self) -> float:
        return self.start + 1.0


def _allowed(per_second: float | None) -> int:
    """Requests a window lets through; without a limit the headers still count down from UNLIMITED_RATE."""
    return UNLIMITED_RATE if per_second is None else math.ceil(per_second)


def _ceil_ms(seconds: float) -> float:
    """Rounded up to the millisecond, so a client that waits that long finds the window over."""
    return max(0.0, math.ceil(seconds * 1000 - 1e-6) / 1000)


def _limit_headers(limit: int, remaining: int, reset: float, reset_after: float, bucket: str) -> dict[str, str]:
    return {
        "X-RateLimit-Limit": str(limit),
        "X-RateLimit-Remaining": str(remaining),
        "X-RateLimit-Reset": f"{math.ceil(reset * 1000) / 1000:.3f}",
        "X-RateLimit-Reset-After": f"{max(0.0, reset_after):.3f}",
        "X-RateLimit-Bucket": bucket,
    }


def _too_many(retry_after: float, is_global: bool, scope: str, headers: dict[str, str]) -> Answer:
    """Discord's 429; a global one carries no bucket headers."""
    body = {"message": "You are being rate limited.", "retry_after": round(retry_after, 3), "global": is_global}
    headers = dict(headers)
    headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    headers["X-RateLimit-Scope"] = scope
    if is_global:
        headers["X-RateLimit-Global"] = "true"
    return json_answer(429, body, headers)


class RateLimits:
    """The windows of every (bucket, credential), the global one and the forced 429s, behind a lock of their own."""

    def __init__(self, per_second: float | None = None, global_per_second: float | None = None) -> None:
        self._initial_rate = check_rate(per_second)
        self._initial_global = check_rate(global_per_second)
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._per_second = self._initial_rate
            self._global_per_second = self._initial_global
            self._buckets: dict[tuple[str, str, str], _Window] = {}
            self._global_window = _Window()
            self._next_prune = 0.0
            self._forced: list[tuple[float, bool, str]] = []

    @property
    def limits(self) -> dict[str, float | None]:
        with self._lock:
            return {"per_second": self._per_second, "global_per_second": self._global_per_second}

    def set_per_second(self, per_second: float | None) -> None:
        per_second = check_rate(per_second)
        with self._lock:
            self._per_second = per_second
            self._buckets = {}

    def set_global(self, per_second: float | None) -> None:
        per_second = check_rate(per_second)
        with self._lock:
            self._global_per_second = per_second
            self._global_window = _Window()

    def force(self, count: int, retry_after: float, is_global: bool, scope: str | None) -> None:
        if scope is None:
            scope = "global" if is_global else "user"
        if scope not in RATE_LIMIT_SCOPES:
            raise ValueError(f"scope must be one of {RATE_LIMIT_SCOPES}, not {scope!r}")
        with self._lock:
            self._forced.extend([(float(retry_after), bool(is_global), scope)] * count)

    def clear_forced(self) -> None:
        with self._lock:
            self._forced.clear()

    def check(self, kind: str | None, credential: str, major: str = "") -> tuple[dict[str, str], Answer | None]:
        """Forced 429s, then the global window, then the window of (route's bucket, major parameter, credential)."""
        bucket = bucket_of(kind)
        with self._lock:
            now = time.time()
            self._prune(now)
            shown = _allowed(self._per_second)
            if self._forced:
                retry_after, is_global, scope = self._forced.pop(0)
                headers = {} if is_global else _limit_headers(shown, 0, now + retry_after, retry_after, bucket)
                return {}, _too_many(retry_after, is_global, scope, headers)
            if self._global_per_second is not None:
                window = self._global_window
                window.roll(now)
                if window.used >= _allowed(self._global_per_second):
                    return {}, _too_many(_ceil_ms(window.end - now), True, "global", {})
                window.used += 1
            key = (bucket, major, credential)
            window = self._buckets.get(key)
            if window is None:
                window = self._buckets[key] = _Window()
            window.roll(now)
            reset_after = _ceil_ms(window.end - now)
            if self._per_second is not None and window.used >= shown:
                headers = _limit_headers(shown, 0, window.end, reset_after, bucket)
                return {}, _too_many(reset_after, False, "user", headers)
            window.used += 1
            return _limit_headers(shown, max(0, shown - window.used), window.end, reset_after, bucket), None

    def _prune(self, now: float) -> None:
        """Forgets closed windows now and then, so a run over many tokens does not keep them all."""
        if now >= self._next_prune:
            self._buckets = {key: w for key, w in self._buckets.items() if now < w.end}
            self._next_prune = now + 5.0
