"""Discord's REST API as the Backoffice calls it, the JSON shapes it answers, and the CDN's avatars.

A Bearer token lacking the scope an endpoint needs (``identify`` for
``/users/@me``, ``guilds`` for ``/users/@me/guilds``) answers 401
``{"message": "401: Unauthorized", "code": 0}``, like a bad token.
"""

from __future__ import annotations

import copy
import hashlib
import secrets
import struct
import time
import zlib
from datetime import datetime, timezone
from http import HTTPStatus
from typing import Any

from standin.wire import Answer, Request, json_answer

from .state import Grant, Guild, User


def message_answer(status: int, code: int = 0, message: str | None = None) -> Answer:
    """Discord's REST error shape, e.g. {"message": "401: Unauthorized", "code": 0}."""
    text = message or f"{status}: {HTTPStatus(status).phrase}"
    return json_answer(status, {"message": text, "code": code})


def iso_utc(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat()


def _png_square(size: int, rgb: tuple[int, int, int]) -> bytes:
    """A PNG of one colour, made with the standard library."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" + bytes(rgb) * size
    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(row * size)) + chunk(b"IEND", b""))


class RestEndpoints:
    """The REST routes of StandIn, reading its users and grants (held under its `_lock`)."""

    def _bearer_grant(self, request: Request) -> Grant | None:
        token = request.auth("Bearer")
        if not token:
            return None
        with self._lock:
            grant = self._by_access.get(token)
            return grant if grant is not None and grant.access_live(time.time()) else None

    def _is_bot(self, request: Request) -> bool:
        token = request.auth("Bot")
        return token is not None and secrets.compare_digest(token.encode(), self.app.bot_token.encode())

    def _users_me(self, request: Request) -> Answer:
        if self._is_bot(request):
            return json_answer(200, self._bot_user())
        grant = self._bearer_grant(request)
        if grant is None or "identify" not in grant.scopes:
            return message_answer(401)
        with self._lock:
            return json_answer(200, self._user_object(grant.user, with_email="email" in grant.scopes))

    def _users_me_guilds(self, request: Request) -> Answer:
        grant = self._bearer_grant(request)
        if grant is None or "guilds" not in grant.scopes:
            return message_answer(401)
        with self._lock:
            return json_answer(200, [self._partial_guild(g) for g in grant.user.guilds])

    def _oauth2_me(self, request: Request) -> Answer:
        grant = self._bearer_grant(request)
        if grant is None:
            return message_answer(401)
        with self._lock:
            body = {
                "application": self._application_object(full=False),
                "scopes": list(grant.scopes),
                "expires": iso_utc(grant.expires_at),
            }
            if "identify" in grant.scopes:
                body["user"] = self._user_object(grant.user, with_email=False)
            return json_answer(200, body)

    def _applications_me(self, request: Request) -> Answer:
        if not self._is_bot(request):
            return message_answer(401)
        with self._lock:
            return json_answer(200, self._application_object(full=True))

    def _avatar(self, request: Request) -> Answer | None:
        """Avatars as Discord's CDN serves them (/avatars/<user>/<hash>.png, /embed/avatars/<n>.png).

        Each is a plain square in a colour taken from its path, so the pages
        show a picture offline and tell users apart.
        """
        path = request.path
        if request.method != "GET" or not path.endswith(".png"):
            return None
        if not (path.startswith("/avatars/") or path.startswith("/embed/avatars/")):
            return None
        digest = hashlib.sha1(path.encode()).digest()
        return Answer(200, _png_square(64, (88 + digest[0] % 120, 80 + digest[1] % 120, 160 + digest[2] % 90)),
                      "image/png")

    # JSON shapes

    @staticmethod
    def _user_object(user: User, with_email: bool) -> dict[str, Any]:
        body = {
            "id": user.id, "username": user.username, "discriminator": "0", "global_name": user.global_name,
            "avatar": user.avatar, "banner": None, "accent_color": None, "public_flags": 0, "flags": 0,
            "locale": user.locale, "mfa_enabled": False, "premium_type": 0, "avatar_decoration_data": None,
        }
        if with_email:
            body.update(email=user.email, verified=user.verified)
        return body

    def _bot_user(self) -> dict[str, Any]:
        return {
            "id": self.app.bot_user_id, "username": self.app.bot_username, "discriminator": "0",
            "global_name": None, "avatar": None, "bot": True, "public_flags": 0, "flags": 0,
            "verified": True, "mfa_enabled": False, "email": None, "locale": "en-US", "premium_type": 0,
        }

    @staticmethod
    def _partial_guild(guild: Guild) -> dict[str, Any]:
        return {"id": guild.id, "name": guild.name, "icon": guild.icon, "banner": None, "owner": guild.owner,
                "permissions": guild.permissions, "features": []}

    @staticmethod
    def _guild_object(guild: Guild) -> dict[str, Any]:
        return {
            "id": guild.id, "name": guild.name, "icon": guild.icon, "owner_id": guild.owner_id,
            "description": None, "splash": None, "banner": None, "features": [], "roles": [], "emojis": [],
            "verification_level": 0, "default_message_notifications": 0, "explicit_content_filter": 0,
            "mfa_level": 0, "premium_tier": 0, "preferred_locale": "en-US", "afk_timeout": 300,
        }

    def _webhook_object(self, guild: Guild) -> dict[str, Any]:
        webhook_id, token = self.snowflake(), secrets.token_urlsafe(48)
        return {
            "id": webhook_id, "type": 1, "guild_id": guild.id, "channel_id": self.snowflake(),
            "name": self.app.name, "avatar": None, "token": token, "application_id": self.app.client_id,
            "url": f"{self.base_url}/api/webhooks/{webhook_id}/{token}",
        }

    def _application_object(self, full: bool) -> dict[str, Any]:
        app = self.app
        body = {
            "id": app.client_id, "name": app.name, "icon": None, "description": app.description, "summary": "",
            "type": None, "hook": True, "bot_public": app.bot_public,
            "bot_require_code_grant": app.bot_require_code_grant, "verify_key": app.verify_key, "flags": app.flags,
        }
        if full:
            bot = {k: v for k, v in self._bot_user().items() if k in ("id", "username", "discriminator", "avatar",
                                                                      "global_name", "public_flags", "flags", "bot")}
            owner = {k: v for k, v in self._user_object(self.owner, False).items()
                     if k in ("id", "username", "discriminator", "avatar", "global_name", "public_flags", "flags")}
            body.update(
                redirect_uris=list(app.redirect_uris), bot=bot, owner=owner, team=None,
                interactions_endpoint_url=None, role_connections_verification_url=None,
                integration_types_config=copy.deepcopy(app.integration_types_config),
                approximate_guild_count=self._bot_guild_count(),
            )
            if app.event_webhooks_url:
                body.update(event_webhooks_url=app.event_webhooks_url, event_webhooks_status=2,
                            event_webhooks_types=["APPLICATION_AUTHORIZED", "APPLICATION_DEAUTHORIZED"])
        return body

    def _bot_guild_count(self) -> int:
        ids = {g.id for u in self._users.values() for g in u.guilds if g.bot_added}
        return len(ids)
