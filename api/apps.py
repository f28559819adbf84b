from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "api"
    label = "api"
    verbose_name = "HTTP API"

    def ready(self):
        # drf-spectacular finds the service keys' security scheme only once imported.
        from . import schema  # noqa: F401
