"""The bot at work: the channels of a server it is in, and the messages it posts there.

- Every server gets Discord's default channels when it is made: a category
  with ``general`` (text), ``announcements`` and a ``General`` voice channel.
- Both routes take the bot token only (anything else: 401). An unknown server
  is 404 Unknown Guild (10004), an unknown channel 404 Unknown Channel
  (10003); a server the bot is not in (never added, or ``remove_bot()``)
  answers 403 Missing Access (50001) for the server and each of its channels.
- A message needs ``{"content": "…"}`` of 1 to 2,000 characters, else 400
  Invalid Form Body (50035); a category cannot hold one (400, 50008). A
  channel ``deny_send()`` marked answers 403 Missing Permissions (50013),
  as when its overwrites deny the bot Send Messages. Checked in that order.
- Posted messages are kept per channel (``messages()``), so a test can read
  what the Backoffice sent.
"""

from __future__ import annotations

import re
import time
from typing import Any

from standin.wire import Answer, Request, json_answer

from .rest import iso_utc, message_answer
from .state import Channel, Guild

TEXT, VOICE, CATEGORY, ANNOUNCEMENT = 0, 2, 4, 5
MAX_CONTENT = 2000
# The routes' paths under the API prefix; the id in each is the route's major parameter.
GUILD_CHANNELS = re.compile(r"/guilds/(?P<guild_id>\d+)/channels")
CHANNEL_MESSAGES = re.compile(r"/channels/(?P<channel_id>\d+)/messages")
BOT_ROUTES = ((GUILD_CHANNELS, "guild_channels"), (CHANNEL_MESSAGES, "channel_messages"))


def bot_route(tail: str) -> tuple[str, str] | None:
    """(kind, major parameter) of a bot route's path under the API prefix; None for any other path."""
    for pattern, kind in BOT_ROUTES:
        match = pattern.fullmatch(tail)
        if match:
            return kind, match.group(1)
    return None


def invalid_content(content: Any) -> Answer:
    """Discord's 50035 with the field's own error, as it answers a body it cannot use."""
    if not isinstance(content, str):
        error = {"code": "BASE_TYPE_REQUIRED", "message": "This field is required"}
    else:
        error = {"code": "BASE_TYPE_BAD_LENGTH", "message": f"Must be between 1 and {MAX_CONTENT} in length."}
    return json_answer(400, {"message": "Invalid Form Body", "code": 50035,
                             "errors": {"content": {"_errors": [error]}}})


class BotEndpoints:
    """The bot routes of StandIn, on its servers and channels (held under its `_lock`)."""

    def _default_channels(self, guild: Guild) -> list[Channel]:
        category = Channel(self.snowflake(), guild.id, CATEGORY, "Channels", 0)
        return [
            category,
            Channel(self.snowflake(), guild.id, TEXT, "general", 0, category.id),
            Channel(self.snowflake(), guild.id, ANNOUNCEMENT, "announcements", 1, category.id),
            Channel(self.snowflake(), guild.id, VOICE, "General", 2, category.id),
        ]

    # faults and inspection

    def remove_bot(self, guild_id: str) -> None:
        """The bot is kicked from the server: every route of that server answers 403 Missing Access."""
        with self._lock:
            self._guilds[str(guild_id)].bot_added = False
            self._changed()

    def deny_send(self, channel_id: str) -> None:
        """The channel's overwrites deny the bot Send Messages: posting there answers 403 (50013)."""
        with self._lock:
            self._channels[str(channel_id)].can_send = False
            self._changed()

    def channels(self, guild_id: str) -> list[Channel]:
        with self._lock:
            return list(self._guilds[str(guild_id)].channels)

    def messages(self, channel_id: str) -> list[dict[str, Any]]:
        """The messages posted in a channel, oldest first, as the API answered them."""
        with self._lock:
            return [dict(message) for message in self._messages.get(str(channel_id), [])]

    # routes

    def _guild_channels(self, request: Request, guild_id: str) -> Answer:
        if not self._is_bot(request):
            return message_answer(401)
        with self._lock:
            guild = self._guilds.get(guild_id)
            if guild is None:
                return message_answer(404, 10004, "Unknown Guild")
            if not guild.bot_added:
                return message_answer(403, 50001, "Missing Access")
            return json_answer(200, [self._channel_object(c) for c in guild.channels])

    def _channel_messages(self, request: Request, channel_id: str) -> Answer:
        if not self._is_bot(request):
            return message_answer(401)
        try:
            content = request.json().get("content")
        except ValueError:
            content = None
        with self._lock:
            channel = self._channels.get(channel_id)
            if channel is None:
                return message_answer(404, 10003, "Unknown Channel")
            if not self._guilds[channel.guild_id].bot_added:
                return message_answer(403, 50001, "Missing Access")
            if not isinstance(content, str) or not 1 <= len(content) <= MAX_CONTENT:
                return invalid_content(content)
            if channel.type == CATEGORY:
                return message_answer(400, 50008, "Cannot send messages in a non-text channel")
            if not channel.can_send:
                return message_answer(403, 50013, "Missing Permissions")
            message = self._message_object(channel, content)
            channel.last_message_id = message["id"]
            self._messages.setdefault(channel.id, []).append(message)
            self._changed()
            return json_answer(200, message)

    # JSON shapes

    @staticmethod
    def _channel_object(channel: Channel) -> dict[str, Any]:
        body = {"id": channel.id, "type": channel.type, "guild_id": channel.guild_id, "name": channel.name,
                "parent_id": channel.parent_id, "position": channel.position, "permission_overwrites": [],
                "flags": 0}
        if channel.type in (TEXT, ANNOUNCEMENT):
            body.update(topic=None, nsfw=False, last_message_id=channel.last_message_id, rate_limit_per_user=0)
        elif channel.type == VOICE:
            body.update(bitrate=64000, user_limit=0, rtc_region=None, nsfw=False)
        return body

    def _message_object(self, channel: Channel, content: str) -> dict[str, Any]:
        author = {k: v for k, v in self._bot_user().items()
                  if k in ("id", "username", "discriminator", "global_name", "avatar", "bot", "public_flags")}
        return {
            "id": self.snowflake(), "type": 0, "channel_id": channel.id, "content": content, "author": author,
            "timestamp": iso_utc(time.time()), "edited_timestamp": None, "tts": False, "mention_everyone": False,
            "mentions": [], "mention_roles": [], "attachments": [], "embeds": [], "pinned": False, "flags": 0,
            "components": [],
        }
