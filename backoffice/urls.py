from django.contrib import admin
from django.http import Http404
from django.urls import include, path, re_path
from django.views.decorators.csrf import csrf_exempt

from api.errors import not_found as api_not_found

# The admin says whose it is, on every page and in the browser's tab.
admin.site.site_header = "Backoffice"
admin.site.site_title = "Backoffice"
admin.site.index_title = "Administration"

# A path holding a control character (U+0000–U+001F, U+007F: %00, %0d, %0a
# and the like) names nothing here. Such a path is answered before any other
# route sees it (some would take it: <str:…> takes a %0d, a route's regex
# may not take a %0a), for every method, with or without a key: one scan of
# the path, linear.
CONTROL_CHARACTER = r"^[^\x00-\x1f\x7f]*[\x00-\x1f\x7f]"


@csrf_exempt
def control_character(request):
    """404 for a path with a control character: the API's JSON under /api/, the site's page elsewhere.

    Exempt from CSRF, so that a POST is answered 404 like a GET, not 403.
    """
    if request.path_info.startswith("/api/"):
        return api_not_found(request)
    raise Http404("No such page.")


urlpatterns = [
    re_path(CONTROL_CHARACTER, control_character),
    path("admin/", admin.site.urls),
    path("", include("api.urls")),
    path("", include("connectors.urls")),
]

# JSON under /api/, the site's page elsewhere.
handler400 = "api.errors.bad_request"
handler500 = "api.errors.server_error"
