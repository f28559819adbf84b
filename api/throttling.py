"""Each key's pace, API_THROTTLE_RATE, counted in Django's cache so every worker and host shares it.

A fixed window per key: one counter a window, a few statements on the
database cache, one command on Redis. Django REST framework's own throttle
keeps a list of every request's time instead and writes it all back on
each call (600 entries at the default rate). On Redis the count is exact; on the
database cache two calls at the same instant may be counted as one, as with
Django REST framework's throttles. A key may send up to twice the rate
across the end of one window and the start of the next.
"""

import math
import time

from django.conf import settings
from django.core.cache import cache
from rest_framework.throttling import BaseThrottle

PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_rate(rate):
    """``600/min`` → (600, 60): Django REST framework's notation, the period read by its first letter."""
    count, _, period = rate.partition("/")
    return int(count), PERIODS[period[:1]]


class ServiceKeyThrottle(BaseThrottle):
    def __init__(self):
        self.limit, self.period = parse_rate(settings.API_THROTTLE_RATE)
        self.retry_after = None

    def allow_request(self, request, view):
        key = request.auth
        if key is None:
            return True
        now = time.time()
        window = int(now // self.period)
        counter = f"api:throttle:{key.pk}:{window}"
        try:
            count = cache.incr(counter)
        except ValueError:
            count = 1 if cache.add(counter, 1, self.period + 1) else cache.incr(counter)
        if count <= self.limit:
            return True
        # Whole seconds, never 0: Retry-After is read as "now" otherwise.
        self.retry_after = max(1, math.ceil((window + 1) * self.period - now))
        return False

    def wait(self):
        return self.retry_after
