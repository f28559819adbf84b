"""The site's URLs, and the bare view that is the yardstick of a page in bench/flow.py.

The bare view reads the session and the user, as every page of the flow
must, and does nothing else. It lives here, never in the site's own URLs.
"""

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.urls import include, path


@login_required
def bare(request):
    return HttpResponse(str(request.user.pk), content_type="text/plain")


urlpatterns = [
    path("_bench/bare", bare),
    path("", include("backoffice.urls")),
]
