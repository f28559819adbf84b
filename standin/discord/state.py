"""What the Discord stand-in remembers: the application, its users and their servers, codes and grants."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

DISCORD_EPOCH_MS = 1420070400000
MANAGE_GUILD = 1 << 5
ADMINISTRATOR = 1 << 3


def new_token() -> str:
    return secrets.token_urlsafe(24)


def _recommended_install_config() -> dict[str, Any]:
    """The install settings the operator guide asks for, so checks of them pass by default."""
    return {
        "0": {"oauth2_install_params": {"scopes": ["applications.commands", "bot"], "permissions": "0"}},
        "1": {"oauth2_install_params": {"scopes": ["applications.commands"], "permissions": "0"}},
    }


@dataclass
class App:
    """The one registered application; mutable so a test can mimic a misconfigured portal."""

    client_id: str = "100000000000000001"
    client_secret: str = "standin-client-secret-000000000000"
    bot_token: str = "MTAwMDAwMDAwMDAwMDAwMDAx.Gstand.in-bot-token-0000000000000000000000"
    name: str = "Backoffice Stand-in"
    bot_public: bool = True
    bot_require_code_grant: bool = True
    redirect_uris: list[str] = field(default_factory=list)
    flags: int = 1 << 15
    bot_user_id: str = "100000000000000001"
    bot_username: str = "Stand-in Bot"
    description: str = "Local Discord stand-in application"
    # Set by the stand-in from the key pair it makes, so that only its own signatures verify.
    verify_key: str = ""
    integration_types_config: dict[str, Any] = field(default_factory=_recommended_install_config)
    # Webhooks → Endpoint URL: where events go; None sends none, as before one is registered.
    event_webhooks_url: str | None = None


DEFAULT_APP = App()


@dataclass(eq=False)
class Channel:
    """A channel of a server; `can_send` False mimics a channel whose overwrites deny the bot Send Messages."""

    id: str
    guild_id: str
    type: int
    name: str
    position: int
    parent_id: str | None = None
    can_send: bool = True
    last_message_id: str | None = None


@dataclass(eq=False)
class Guild:
    """A server as one user sees it (ownership and permissions are that user's)."""

    id: str
    name: str
    owner_id: str
    owner: bool = True
    permissions: str = "2147483647"
    icon: str | None = None
    bot_added: bool = False
    channels: list[Channel] = field(default_factory=list)

    def can_install(self) -> bool:
        """Discord only lists servers where the user may add a bot."""
        perms = int(self.permissions)
        return self.owner or bool(perms & (MANAGE_GUILD | ADMINISTRATOR))


@dataclass(eq=False)
class User:
    id: str
    username: str
    global_name: str | None = None
    avatar: str | None = None
    email: str | None = None
    verified: bool = True
    locale: str = "en-US"
    guilds: list[Guild] = field(default_factory=list)


@dataclass(eq=False)
class Code:
    value: str
    client_id: str
    redirect_uri: str
    scopes: tuple[str, ...]
    user: User
    guild: Guild | None
    permissions: str
    expires_at: float
    used: bool = False


@dataclass(eq=False)
class Grant:
    """One authorization; refreshing swaps its tokens in place, revoking kills both."""

    user: User
    access_token: str
    refresh_token: str | None
    scopes: tuple[str, ...]
    expires_at: float
    client_id: str
    guild: Guild | None = None
    permissions: str = "0"
    webhook: dict[str, Any] | None = None
    revoked: bool = False

    def access_live(self, now: float) -> bool:
        return not self.revoked and now < self.expires_at
