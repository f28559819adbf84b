"""What every web request shares: a bound on waiting for a provider, our pages for what cannot be helped."""

import logging

from django.conf import settings
from django.shortcuts import render

from .checks import UNREADABLE_MESSAGE
from .exceptions import EncryptionKeyError, RateLimited
from .ratelimit import waits_within

logger = logging.getLogger("connectors.config")


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


class UnreadableConfiguration:
    """A stored value no key decrypts: our 503 page and connectors.E001 in the log, never a 500.

    The person is told the site cannot use its stored configuration right
    now; what to do about it (the key) goes to the log, for the operator.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not isinstance(exception, EncryptionKeyError):
            return None
        logger.error("connectors.E001: %s (%s)", UNREADABLE_MESSAGE, request.path)
        return render(request, "connectors/unreadable.html", status=503)
