"""The page a locked-out sign-in gets (django-axes calls it: AXES_LOCKOUT_CALLABLE)."""

import math

from axes.helpers import get_client_username, get_cool_off
from axes.models import AccessAttempt
from django.conf import settings
from django.db.models import Max
from django.utils import timezone

from .throttles import too_many_page


def lockout_response(request, original_response=None, credentials=None):
    """Our page, with axes's status (429) and Retry-After, saying when to try again.

    The lock ends a cool-off after the last failure counted for this username
    and address; refused tries are not counted, so that time holds however
    often the person tries meanwhile.
    """
    now = timezone.now()
    last_failure = AccessAttempt.objects.filter(
        username=get_client_username(request, credentials),
        ip_address=request.axes_ip_address,
    ).aggregate(last=Max("attempt_time"))["last"]
    until = (last_failure or now) + get_cool_off(request)
    wait = max(1, math.ceil((until - now).total_seconds()))
    return too_many_page(
        request,
        until=until,
        wait=wait,
        status=settings.AXES_HTTP_RESPONSE_CODE,
        title="Sign-in locked",
        heading="Sign-in is locked for a while",
        reason="There were too many failed sign-ins for this username from your address, so no sign-in for it "
        "from here is accepted for now, not even with the right password. If you have forgotten your "
        "password, an administrator can set a new one and lift the lock.",
        back_url=request.get_full_path(),
        back_label="Back to the sign-in page",
    )
