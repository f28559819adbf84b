"""The bot at work in a server it was added to: where it can post, and a message.

Through the client, so through the shared rate-limit pace, and through the
circuit breaker, like every call to Discord. Discord says the bot lost a
server with 403 Missing Access (50001) or Missing Permissions (50013), or
404 Unknown Guild: those become AccessLost, which marks the server.
"""

from django.views.decorators.debug import sensitive_variables

from connectors.breaker import Breaker
from connectors.config import config_values
from connectors.exceptions import AccessLost, NotConfigured, ProviderRejected

from . import client

SERVICE_ID = "appmixer:discord"
MISSING = {50001: "Missing Access", 50013: "Missing Permissions"}
UNKNOWN_GUILD = 10004
# Channel types the bot can post a plain message in: text and announcement.
POSTABLE = (0, 5)
MAX_CONTENT = 2000


def _lost(error):
    if error.status == 403 and error.code in MISSING:
        return AccessLost(f"Discord: {MISSING[error.code]}", status=error.status, code=error.code)
    if error.status == 404 and error.code == UNKNOWN_GUILD:
        return AccessLost("Discord: the bot is no longer in this server", status=404, code=error.code)
    return None


@sensitive_variables("bot_token")
def _as_bot(method, path, bot_token, **kwargs):
    if not bot_token:
        raise NotConfigured("The bot token is not set.")
    with Breaker(SERVICE_ID).watching("Discord"):
        try:
            return client.send(method, path, headers=client.bot(bot_token), **kwargs)
        except ProviderRejected as error:
            raise _lost(error) or error from None


def guild_channels(server, values):
    """The channels of the server the bot can post in, as ``[(id, name)]``, in Discord's order."""
    channels = _as_bot("GET", client.GUILD_CHANNELS.format(server.server_id), values.get("botToken"))
    postable = [
        channel for channel in channels if isinstance(channel, dict) and channel.get("type") in POSTABLE
        and str(channel.get("id", "")).isdigit()
    ]
    postable.sort(key=lambda channel: (channel.get("position") or 0, int(channel["id"])))
    return [(channel["id"], str(channel.get("name") or channel["id"])[:100]) for channel in postable]


def send_message(server, channel_id, content, values=None):
    """Post ``content`` (cut to Discord's 2,000 characters) in a channel of ``server`` as the bot.

    For other code too: ``values`` (the stored configuration) is read when
    not given. Returns Discord's message object.
    """
    if not str(channel_id).isdigit():
        raise ProviderRejected("That is not a Discord channel id.")
    values = config_values(SERVICE_ID) if values is None else values
    return _as_bot("POST", client.CHANNEL_MESSAGES.format(channel_id), values.get("botToken"),
                   json={"content": content[:MAX_CONTENT]})
