"""The sign-up throttle: SIGNUP_RATE sign-up POSTs per client address, then our 429 page.

Beside ``lockout.py`` (the sign-in lock), since both guard the end users'
logins against abuse from one address and read that address the same way:
django-axes's ``get_client_ip_address``, which honours LOGIN_IP_HEADER and
LOGIN_PROXY_COUNT (settings: AXES_IPWARE_*). An address that cannot be read
(the named header missing) is counted under one shared key, so it is no way
around the count.

A fixed window per address in Django's cache, as the API's throttle counts
service keys (``api.throttling``): one counter a window; an address may send
up to twice the rate across the end of one window and the start of the next.
A failing cache lets the sign-up through, with a WARNING (connectors.cache's
``cache_fail_open``): the throttle is a brake on mass sign-ups, not a reason
to refuse everyone while the cache is down.
"""

import logging
from datetime import timedelta

from axes.helpers import get_client_ip_address
from django.conf import settings
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone

from api.throttling import parse_rate, window_count

logger = logging.getLogger("backoffice.throttles")


def signup_wait(request):
    """Count this sign-up POST; the seconds until the address may post again, or None if it may now."""
    address = get_client_ip_address(request) or "unknown"
    refusal = window_count(f"signup:throttle:{address}", settings.SIGNUP_RATE, what="the sign-up throttle")
    if refusal is None:
        return None
    if refusal.first:
        # Once a window, however many more the address sends.
        logger.warning(
            "sign-up throttled: %s sign-ups from %s within the window", parse_rate(settings.SIGNUP_RATE)[0], address
        )
    return refusal.wait


def throttled_response(request, wait):
    """Our 429 page for a sign-up past SIGNUP_RATE."""
    return too_many_page(
        request,
        until=timezone.now() + timedelta(seconds=wait),
        wait=wait,
        title="Too many sign-ups",
        heading="Too many sign-ups from your address",
        reason="There were too many tries to create a login from your address a short while ago, so no "
        "login can be created from here for now. Nothing was created.",
        back_url=reverse("login"),
        back_label="Go to the sign-in page",
    )


def too_many_page(request, *, until, wait, status=429, **words):
    """The 429 page the sign-up throttle and the sign-in lockout share, with Retry-After.

    ``until`` is shown to the minute, rounded up, so that at the time named
    the wait is over; ``words`` are the page's title, heading, reason and way back.
    """
    shown = until.replace(second=0, microsecond=0)
    if shown < until:
        shown += timedelta(minutes=1)
    response = render(request, "429.html", {**words, "until": shown, "wait": wait}, status=status)
    response["Retry-After"] = str(wait)
    return response
