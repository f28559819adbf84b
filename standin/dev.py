"""The Discord connector pointed at the local stand-in: development, tests, benchmarks."""

from connectors.config import config_update
from connectors.discord.connector import DiscordConnector
from connectors.registry import registry

from .discord import DEFAULT_APP, StandIn


def store_standin_credentials(app=DEFAULT_APP):
    """Store the stand-in application's credentials, as an operator would paste Discord's.

    Returns the keys changed (config_update writes nothing for a value already stored).
    """
    values = {
        "clientId": app.client_id,
        "clientSecret": app.client_secret,
        "botToken": app.bot_token,
    }
    return config_update(service_id=DiscordConnector.service_id, values=values)


def standin_start(*, port):
    """Run the stand-in with this site's redirect URL registered, as the portal guide asks.

    Returns the running stand-in and the credential keys that changed.
    """
    redirect = registry.get(DiscordConnector.service_id).redirect_url()
    standin = StandIn(port=port, redirect_uris=[redirect]).start()
    return standin, store_standin_credentials(standin.app)
