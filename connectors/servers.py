"""The app at work in a server an account added it to: where it can post, a test message.

Both ask the provider on demand (never while a page lists accounts). When
the provider says the app can no longer act there, the server is marked, so
that the accounts page and the admin say so and offer to add the app again;
a message that goes through again clears the mark.
"""

import logging

from django.conf import settings
from django.utils import timezone

from .config import config_values
from .exceptions import AccessLost, ProviderError
from .models import AccountServer

logger = logging.getLogger("connectors.servers")


def _mark_lost(server, error):
    server.access_lost_at, server.access_lost_reason = timezone.now(), str(error)[:300]
    AccountServer.objects.filter(pk=server.pk).update(
        access_lost_at=server.access_lost_at, access_lost_reason=server.access_lost_reason
    )
    logger.warning("%s %s of account %s: access lost (%s)",
                   server.account.connector.server_noun, server.server_id, server.account_id, error)


def server_channels(server, values=None):
    """Where the app can post in ``server``, as ``[(id, name)]``; marks the server on AccessLost.

    ``values`` is the connector's configuration, read when not given.
    """
    connector = server.account.connector
    values = config_values(connector.service_id) if values is None else values
    try:
        return connector.server_channels(server, values)
    except AccessLost as error:
        _mark_lost(server, error)
        raise


def greeting_for(user):
    return f"Test message from Backoffice ({settings.PUBLIC_BASE_URL}), sent at the request of {user.get_username()}."


def server_test_message(server, *, user, channel_id=None):
    """Post a short test message as the app; returns the channel's ``(id, name)``.

    Without ``channel_id`` it goes to the first channel the app can post in.
    Raises ProviderError (AccessLost marks the server) when the provider
    refuses, and a ProviderError too when there is nowhere to post.
    """
    connector = server.account.connector
    values = config_values(connector.service_id)
    channels = server_channels(server, values)
    if channel_id is None:
        if not channels:
            raise ProviderError(f"{connector.bot_noun.capitalize()} can see no channel to post in there.")
        channel = channels[0]
    else:
        channel = next((found for found in channels if found[0] == channel_id), None)
        if channel is None:
            raise ProviderError(f"{connector.bot_noun.capitalize()} cannot see that channel.")
    try:
        connector.send_message(server, channel[0], greeting_for(user), values)
    except AccessLost as error:
        _mark_lost(server, error)
        raise
    if server.access_lost_at is not None:
        AccountServer.objects.filter(pk=server.pk).update(access_lost_at=None, access_lost_reason="")
        server.access_lost_at, server.access_lost_reason = None, ""
    logger.info("test message sent to %s %s (channel %s) for user %s",
                connector.server_noun, server.server_id, channel[0], user.pk)
    return channel
