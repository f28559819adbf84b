from django.apps import AppConfig


class StandinConfig(AppConfig):
    name = "standin"
    label = "standin"
    verbose_name = "Provider stand-ins (development only)"
