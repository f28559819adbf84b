from django.apps import AppConfig


class SlackConfig(AppConfig):
    name = "connectors.slack"
    label = "slack"
    verbose_name = "Slack connector"

    def ready(self):
        from connectors.registry import registry

        from .connector import SlackConnector

        registry.register(SlackConnector())
