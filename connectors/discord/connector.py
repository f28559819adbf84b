"""The Discord connector: only what differs from the framework's defaults."""

from django.conf import settings

from connectors.registry import ConfigField, Connector

from . import client, credentials
from .validators import clean_bot_token, clean_secret, clean_snowflake


class DiscordConnector(Connector):
    service_id = "appmixer:discord"
    provider = "discord"
    name = "Discord"
    fields = (
        ConfigField(
            key="clientId",
            label="Client ID",
            help_text="The application ID from the Developer Portal (OAuth2 page).",
            clean=clean_snowflake,
        ),
        ConfigField(
            key="clientSecret",
            label="Client secret",
            help_text="From the Developer Portal's OAuth2 page (Reset Secret shows it once).",
            secret=True,
            clean=clean_secret,
        ),
        ConfigField(
            key="botToken",
            label="Bot token",
            help_text="From the Developer Portal's Bot page (Reset Token shows it once).",
            secret=True,
            clean=clean_bot_token,
        ),
    )
    setup_checklist = (
        "OAuth2 → Redirects: add the redirect URL above, exactly as shown.",
        "Bot → Public Bot: on.",
        "Bot → Requires OAuth2 Code Grant: on.",
        "Bot → Server Members Intent: on.",
        "Installation → User Install scopes: applications.commands.",
        "Installation → Guild Install scopes: applications.commands and bot.",
    )

    @property
    def authorize_url(self):
        return settings.DISCORD_AUTHORIZE_URL

    @property
    def http_timeout(self):
        return settings.DISCORD_HTTP_TIMEOUT

    @property
    def token_url(self):
        return settings.DISCORD_API_BASE_URL + client.TOKEN

    def mount(self, session):
        return client.mount(session)

    def raise_for_response(self, response):
        return client.raise_for_response(response)

    def check_credentials(self, values):
        return credentials.credentials_check(connector=self, values=values)
