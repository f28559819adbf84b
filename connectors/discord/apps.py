from django.apps import AppConfig


class DiscordConfig(AppConfig):
    name = "connectors.discord"
    label = "discord"
    verbose_name = "Discord connector"

    def ready(self):
        from connectors.registry import registry

        from .connector import DiscordConnector

        registry.register(DiscordConnector())
