"""Each key's pace, API_THROTTLE_RATE, counted in Django's cache so every worker and host shares it.

A fixed window per key: one counter a window, a few statements on the
database cache, one command on Redis. Django REST framework's own throttle
keeps a list of every request's time instead and writes it all back on
each call (600 entries at the default rate). On Redis the count is exact; on the
database cache two calls at the same instant may be counted as one, as with
Django REST framework's throttles. A key may send up to twice the rate
across the end of one window and the start of the next.
"""

import hashlib
import logging
import math
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from rest_framework.throttling import BaseThrottle

from connectors.cache import cache_fail_open

PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

logger = logging.getLogger("api.auth")


def parse_rate(rate):
    """``600/min`` → (600, 60): Django REST framework's notation, the period read by its first letter."""
    count, _, period = rate.partition("/")
    return int(count), PERIODS[period[:1]]


@dataclass(frozen=True)
class Refusal:
    """A count past its rate: how long until its window ends, and whether it is the window's first."""

    # Whole seconds, never 0: Retry-After is read as "now" otherwise.
    wait: int
    # The first refusal of the window, for a caller that logs once a window.
    first: bool


def window_count(name, rate, *, what):
    """Count one more under ``name`` in the fixed window of ``rate`` (``600/min``), in the shared cache.

    None while the count is within the rate; a Refusal past it. None too
    while the cache fails (cache_fail_open: one WARNING naming ``what``),
    so that our cache's outage refuses nobody. One counter a window: a few
    statements on the database cache, one command on Redis.
    """
    limit, period = parse_rate(rate)
    now = time.time()
    window = int(now // period)
    count = cache_fail_open(what, _incremented, f"{name}:{window}", period)
    if count is None or count <= limit:
        return None
    return Refusal(wait=max(1, math.ceil((window + 1) * period - now)), first=count == limit + 1)


def _incremented(counter, period):
    """The window's count under ``counter``, this one included."""
    try:
        return cache.incr(counter)
    except ValueError:  # the window's first
        return 1 if cache.add(counter, 1, period + 1) else cache.incr(counter)


class ServiceKeyThrottle(BaseThrottle):
    """API_THROTTLE_RATE per service key. While the cache fails the call goes through, with a WARNING:
    our cache's outage must not refuse every caller (what needs the cache refuses on its own)."""

    def __init__(self):
        self.retry_after = None

    def allow_request(self, request, view):
        key = request.auth
        if key is None:
            return True
        refusal = window_count(f"api:throttle:{key.pk}", settings.API_THROTTLE_RATE, what="the API throttle")
        if refusal is None:
            return True
        self.retry_after = refusal.wait
        return False

    def wait(self):
        return self.retry_after


# Refused keys, API_AUTH_FAILURE_RATE per client address. Only a refusal is
# counted, after the key was looked up: a valid key is never refused by this
# count, from any address, and costs it nothing. The counter lives in the
# shared cache (every worker and host adds to one count), named by a digest
# of the address, so that whatever a proxy header holds makes a short, plain
# key, and by the window; a fixed window as above. The address is read as the
# sign-in lock-out reads it (django-axes's get_client_ip_address: REMOTE_ADDR,
# or LOGIN_IP_HEADER less LOGIN_PROXY_COUNT proxies). While the cache fails
# nothing is counted, with a WARNING (cache_fail_open): a refused key gets
# its 401.


def client_address(request):
    """The caller's address as the sign-in lock-out reads it; "" when none can be read."""
    # Imported here: axes.helpers imports axes's models, and Django REST
    # framework may import this module before the apps are ready.
    from axes.helpers import get_client_ip_address

    return get_client_ip_address(getattr(request, "_request", request)) or ""


def refused_key_wait(request):
    """Count a refused key from the request's address; the seconds to wait once past API_AUTH_FAILURE_RATE, else None."""
    address = client_address(request)
    digest = hashlib.sha256(address.encode()).hexdigest()[:32]
    rate = settings.API_AUTH_FAILURE_RATE
    refusal = window_count(f"api:refused-keys:{digest}", rate, what="the count of refused service keys")
    if refusal is None:
        return None
    if refusal.first:
        limit, period = parse_rate(rate)
        logger.warning(
            "%s refused service keys from %s within %s s (API_AUTH_FAILURE_RATE=%s): further refusals answered 429",
            limit + 1, address or "an unknown address", period, rate,
        )
    return refusal.wait
