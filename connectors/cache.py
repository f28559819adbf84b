"""What a failure of the shared cache means, around a call to a provider.

The pace and the breaker keep their state in Django's cache (Redis, or the
database cache on a connection of its own). That cache can fail like any
server. Its failure means two different things, depending on when it comes:

- **before a call**: nothing has been sent yet, and without the pace or the
  breaker nothing may be; the caller gets ServiceUnavailable (ours, never
  the provider's) and the provider is not asked;
- **after an answer**: the provider has acted (a refresh has rotated the
  tokens, a code has been spent), so the answer must reach the code that
  stores it; the bookkeeping is skipped and logged at WARNING.

Work that only guards a request (a throttle, a count of failed attempts)
fails open instead: the request goes on, with a WARNING (cache_fail_open).
How long a failure may take is bounded by CACHE_CONNECT_TIMEOUT and
CACHE_TIMEOUT (backoffice/settings.py).
"""

import logging
from contextlib import contextmanager

from django.db import DatabaseError, connections

from .exceptions import ServiceUnavailable

logger = logging.getLogger("connectors.cache")

UNREACHABLE = "This site cannot reach its shared cache at the moment, so nothing was done."


def cache_errors():
    """The exceptions a failing cache raises: the database cache's and Redis's (which wraps its sockets')."""
    errors = [DatabaseError]
    try:
        from redis.exceptions import RedisError
    except ImportError:  # pragma: no cover - redis is a dependency, but the cache may be another
        pass
    else:
        errors.append(RedisError)
    return tuple(errors)


CACHE_ERRORS = cache_errors()


def forget_broken_connections():
    """Close database connections an error left unusable, so that the next use opens a new one.

    Django does this between web requests; a command's threads and the rest
    of a request would otherwise keep failing on a connection that died in a
    blip. A connection inside a transaction is left alone: its owner decides.
    """
    for connection in connections.all(initialized_only=True):
        if connection.errors_occurred and not connection.in_atomic_block:
            connection.close_if_unusable_or_obsolete()


@contextmanager
def before_call(what):
    """Cache work that decides whether a call may go: a failure means no call (ServiceUnavailable)."""
    try:
        yield
    except CACHE_ERRORS as error:
        logger.warning("%s could not read the shared cache (%s); nothing was sent", what, type(error).__name__)
        forget_broken_connections()
        raise ServiceUnavailable(UNREACHABLE) from None


@contextmanager
def after_answer(what):
    """Cache work after the provider answered: a failure is logged and skipped, never raised."""
    try:
        yield
    except CACHE_ERRORS as error:
        logger.warning(
            "%s after the provider's answer was skipped: the shared cache failed (%s)", what, type(error).__name__
        )
        forget_broken_connections()


def cache_fail_open(what, function, /, *args, default=None, **kwargs):
    """``function(*args, **kwargs)``, cache work that only guards a request; ``default`` if the cache fails.

    For throttles and counts of failed attempts: while the shared cache is
    down they let requests through rather than refuse them all, each time
    with one WARNING naming ``what`` ("the sign-up throttle"). What the
    cache must decide before a call to a provider (the pace, the breaker)
    refuses instead: before_call. Other errors than the cache's
    (CACHE_ERRORS) are raised as they are. A hung cache costs at most
    CACHE_CONNECT_TIMEOUT and CACHE_TIMEOUT per cache command ``function``
    makes, so keep it to one or two.

        count = cache_fail_open("the sign-up throttle", cache.incr, key)
        if count is None:
            ...  # the cache failed: let the request through
    """
    try:
        return function(*args, **kwargs)
    except CACHE_ERRORS as error:
        logger.warning("%s let the request through: the shared cache failed (%s)", what, type(error).__name__)
        forget_broken_connections()
        return default
