from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView

from . import errors, views

# Exact paths: no trailing slash, and anything else under /api/ a JSON 404
# (so APPEND_SLASH never redirects there).
urlpatterns = [
    path("api/v1/health", views.HealthView.as_view(), name="api-health"),
    path("api/v1/accounts", views.AccountsView.as_view(), name="api-accounts"),
    path("api/v1/accounts/<int:account_id>/token", views.AccountTokenView.as_view(), name="api-token"),
    path("api/v1/schema", SpectacularAPIView.as_view(), name="api-schema"),
    re_path(r"^api(?:/.*)?$", errors.not_found),
]
