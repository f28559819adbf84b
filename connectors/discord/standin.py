"""The Discord connector pointed at the local stand-in: development, tests, benchmarks."""

from connectors.config import config_update
from discord_standin import DEFAULT_APP

from .connector import DiscordConnector


def store_standin_credentials(app=DEFAULT_APP):
    """Store the stand-in application's credentials, as an operator would paste Discord's."""
    config_update(
        service_id=DiscordConnector.service_id,
        values={
            "clientId": app.client_id,
            "clientSecret": app.client_secret,
            "botToken": app.bot_token,
        },
    )
