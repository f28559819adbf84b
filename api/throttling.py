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


class ServiceKeyThrottle(BaseThrottle):
    """API_THROTTLE_RATE per service key. While the cache fails the call goes through, with a WARNING:
    our cache's outage must not refuse every caller (what needs the cache refuses on its own)."""

    def __init__(self):
        self.limit, self.period = parse_rate(settings.API_THROTTLE_RATE)
        self.retry_after = None

    def allow_request(self, request, view):
        key = request.auth
        if key is None:
            return True
        now = time.time()
        window = int(now // self.period)
        count = cache_fail_open("the API throttle", self._count, f"api:throttle:{key.pk}:{window}")
        if count is None or count <= self.limit:
            return True
        # Whole seconds, never 0: Retry-After is read as "now" otherwise.
        self.retry_after = max(1, math.ceil((window + 1) * self.period - now))
        return False

    def wait(self):
        return self.retry_after

    def _count(self, counter):
        """This window's calls by the key, this one included."""
        try:
            return cache.incr(counter)
        except ValueError:
            return 1 if cache.add(counter, 1, self.period + 1) else cache.incr(counter)


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
    limit, period = parse_rate(settings.API_AUTH_FAILURE_RATE)
    now = time.time()
    window = int(now // period)
    address = client_address(request)
    digest = hashlib.sha256(address.encode()).hexdigest()[:32]
    counter = f"api:refused-keys:{digest}:{window}"
    count = cache_fail_open("the count of refused service keys", _count, counter, period)
    if count is None or count <= limit:
        return None
    if count == limit + 1:
        logger.warning(
            "%s refused service keys from %s within %s s (API_AUTH_FAILURE_RATE=%s): further refusals answered 429",
            count, address or "an unknown address", period, settings.API_AUTH_FAILURE_RATE,
        )
    return max(1, math.ceil((window + 1) * period - now))


def _count(counter, period):
    """This window's count under ``counter``, this one included."""
    try:
        return cache.incr(counter)
    except ValueError:
        return 1 if cache.add(counter, 1, period + 1) else cache.incr(counter)
