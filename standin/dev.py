"""Each connector pointed at its local stand-in: development, tests, benchmarks.

One entry per provider says which connector a stand-in serves, which setting
names its port and which of its app's values an operator would paste, so
that every stand-in is started and stored the same way. A stand-in that sends
events gets this site's events URL too, so Test credentials finds it
registered, as the operator guide asks.

The stand-ins runserver starts keep their people, grants and keys in one file
(``standin_state_path()``: ``<BASE_DIR>/.standin/state.json``, ignored by git),
so that restarting ``make run`` leaves every connected account working; delete
the file to start afresh. The setting ``STANDIN_STATE_PATH`` names another
file, or None for memory only, as tests keep them.
"""

import hashlib
from dataclasses import dataclass
from typing import Any, Callable

from django.conf import settings

from connectors.config import config_update
from connectors.registry import registry

from . import discord, slack
from .base import ProviderStandIn


@dataclass(frozen=True)
class Wiring:
    service_id: str
    standin: type[ProviderStandIn]
    default_app: Any
    # The setting that holds the port runserver starts the stand-in on.
    port_setting: str
    # The values of the stand-in's app, keyed as the connector's fields.
    credentials: Callable[[Any], dict[str, str]]
    # Whether the stand-in signs and sends webhook events (its app has an event_webhooks_url).
    sends_events: bool = False


def _signing_seed(provider):
    """The same events key at every start of one site (its SECRET_KEY), so the stored publicKey stays right."""
    return hashlib.sha256(f"standin.{provider}.events:{settings.SECRET_KEY}".encode()).digest()


def _discord_credentials(app):
    """Only a stand-in's own app has a public key (each makes its key pair); the default app has none."""
    values = {"clientId": app.client_id, "clientSecret": app.client_secret, "botToken": app.bot_token}
    if app.verify_key:
        values["publicKey"] = app.verify_key
    return values


WIRINGS = {
    "discord": Wiring(
        "appmixer:discord", discord.StandIn, discord.DEFAULT_APP, "DISCORD_EMULATOR_PORT",
        _discord_credentials, sends_events=True,
    ),
    "slack": Wiring(
        "appmixer:slack", slack.StandIn, slack.DEFAULT_APP, "SLACK_EMULATOR_PORT",
        lambda app: {"clientId": app.client_id, "clientSecret": app.client_secret,
                     "signingSecret": app.signing_secret},
    ),
}


def store_standin_credentials(app=None, *, provider="discord"):
    """Store a stand-in app's credentials (its default app's without one), as an operator would paste them.

    Returns the keys changed (config_update writes nothing for a value already stored).
    """
    wiring = WIRINGS[provider]
    values = wiring.credentials(wiring.default_app if app is None else app)
    return config_update(service_id=wiring.service_id, values=values)


def standin_state_path():
    """The file runserver's stand-ins keep their state in; None: memory only."""
    return settings.STANDIN_STATE_PATH


def standin_start(*, provider="discord", port=None, state_path=None):
    """Run a provider's stand-in with this site's redirect URL (and events URL) registered, as the checklist asks.

    ``port`` defaults to the provider's port setting. With ``state_path`` the
    stand-in loads what it kept there and keeps saving it (standin.persist);
    stand-ins of several providers may share one file. Returns the running
    stand-in and the credential keys that changed.
    """
    wiring = WIRINGS[provider]
    connector = registry.get(wiring.service_id)
    port = getattr(settings, wiring.port_setting) if port is None else port
    options = {"signing_seed": _signing_seed(provider)} if wiring.sends_events else {}
    standin = wiring.standin(port=port, redirect_uris=[connector.redirect_url()], state_path=state_path,
                             **options).start()
    if wiring.sends_events:
        standin.app.event_webhooks_url = connector.events_url()
    return standin, store_standin_credentials(standin.app, provider=provider)
