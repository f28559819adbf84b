"""Writing what a provider has answered, through a database blip.

Once a provider has answered, its answer is the only copy: a refreshed pair
(the old refresh token is dead), a grant that must be revoked later. A
database error then must not drop it. The write is tried again for
TOKEN_STORE_RETRY_FOR seconds, with growing pauses, each time on a fresh
connection; only then does the caller give up (and log ``LOST:`` or
``LEAKED:``).
"""

import logging
import time

from django.conf import settings
from django.db import DatabaseError, connection, transaction

logger = logging.getLogger("connectors.storing")

# The first pause, and the longest: a blip is often over within a second,
# and whoever waits for the row lock meanwhile must not get in first.
FIRST_PAUSE = 0.1
LONGEST_PAUSE = 2.0


def store_retrying(write, *, what, clock=time.monotonic, sleep=time.sleep):
    """``write()`` in a transaction of its own until it succeeds or TOKEN_STORE_RETRY_FOR has passed.

    Returns what ``write`` returned; raises the last DatabaseError when time
    runs out. ``what`` names the write in the log, never a value.
    """
    deadline = clock() + settings.TOKEN_STORE_RETRY_FOR
    pause, attempt = FIRST_PAUSE, 0
    while True:
        attempt += 1
        if not connection.in_atomic_block:
            # A connection a blip broke would fail every attempt; a new one may not.
            connection.close_if_unusable_or_obsolete()
        try:
            with transaction.atomic():
                result = write()
        except DatabaseError as error:
            left = deadline - clock()
            if left <= 0:
                logger.warning("storing %s failed at attempt %s (%s); giving up", what, attempt, type(error).__name__)
                raise
            logger.warning("storing %s failed at attempt %s (%s); trying again", what, attempt, type(error).__name__)
            sleep(min(pause, left))
            pause = min(pause * 2, LONGEST_PAUSE)
            continue
        if attempt > 1:
            logger.info("stored %s at attempt %s", what, attempt)
        return result
