from django.contrib import admin
from django.urls import include, path

# The admin says whose it is, on every page and in the browser's tab.
admin.site.site_header = "Backoffice"
admin.site.site_title = "Backoffice"
admin.site.index_title = "Administration"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("api.urls")),
    path("", include("connectors.urls")),
]

# JSON under /api/, the site's page elsewhere.
handler500 = "api.errors.server_error"
