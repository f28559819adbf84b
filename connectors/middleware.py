"""What every web request shares: a bound on waiting for a provider."""

from django.conf import settings
from django.shortcuts import render

from .exceptions import RateLimited
from .ratelimit import waits_within


class BoundedWaits:
    """Waits for a provider inside a request end within REQUEST_MAX_WAIT seconds.

    Past that the person gets our page saying the provider is busy and when
    to try again (503 with Retry-After), long before a worker timeout would
    answer with a bare 502. Commands and sweeps, outside any request, may
    wait longer.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        with waits_within(settings.REQUEST_MAX_WAIT):
            return self.get_response(request)

    def process_exception(self, request, exception):
        if isinstance(exception, RateLimited):
            return busy_response(request, exception)
        return None


def busy_response(request, error, *, connector=None):
    """Our 503 page for a rate limit, with the wait it asks for."""
    wait = max(1, round(error.retry_after)) if error.retry_after is not None else 60
    response = render(
        request, "connectors/busy.html", {"connector": connector, "wait": wait}, status=503
    )
    response["Retry-After"] = str(wait)
    return response
