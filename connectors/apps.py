from django.apps import AppConfig


class ConnectorsConfig(AppConfig):
    name = "connectors"
    verbose_name = "Connectors"

    def ready(self):
        from . import checks, notify  # noqa: F401  (register the system checks and the mail receiver)
