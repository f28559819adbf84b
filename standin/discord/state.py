"""What the Discord stand-in remembers: the application, its users and their servers, codes and grants;
and what of it a stand-in with a state path keeps across restarts (``dump_saved``, ``load_saved``)."""

from __future__ import annotations

import secrets
import time
from dataclasses import asdict, dataclass, field, fields
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


# Kept state (standin.persist): the JSON a stand-in with a state path saves, and what it makes of it again.
# Codes are not kept (they live ten minutes), nor grants that can never work again (revoked, or expired
# without a refresh token): their tokens are unknown after a restart, as Discord forgets them. Servers are
# listed once and named by their place in that list, since a server is one object per person who sees it,
# and people, grants and the bot's routes share them.


@dataclass(eq=False)
class Saved:
    """Everything load_saved makes from a section, ready for the stand-in to take over at once."""

    app: App
    signing_seed: bytes | None
    owner: User
    users: dict[str, User]
    logged_in: User | None
    guilds: dict[str, Guild]
    channels: dict[str, Channel]
    grants: list[Grant]
    messages: dict[str, list[dict[str, Any]]]
    last_snowflake: int


def _optional(value: Any, kind: type) -> Any:
    return None if value is None else kind(value)


def _app_from(data: dict[str, Any]) -> App:
    """Fields this version does not know are dropped; ones it added since keep their defaults."""
    known = {f.name for f in fields(App)}
    app = App(**{key: value for key, value in data.items() if key in known})
    app.redirect_uris = [str(uri) for uri in app.redirect_uris]
    return app


def _channel_to(channel: Channel) -> dict[str, Any]:
    return {"id": channel.id, "guild_id": channel.guild_id, "type": channel.type, "name": channel.name,
            "position": channel.position, "parent_id": channel.parent_id, "can_send": channel.can_send,
            "last_message_id": channel.last_message_id}


def _channel_from(data: dict[str, Any]) -> Channel:
    return Channel(str(data["id"]), str(data["guild_id"]), int(data["type"]), str(data["name"]),
                   int(data["position"]), _optional(data["parent_id"], str), bool(data["can_send"]),
                   _optional(data["last_message_id"], str))


def _guild_to(guild: Guild) -> dict[str, Any]:
    return {"id": guild.id, "name": guild.name, "owner_id": guild.owner_id, "owner": guild.owner,
            "permissions": guild.permissions, "icon": guild.icon, "bot_added": guild.bot_added,
            "channels": [_channel_to(channel) for channel in guild.channels]}


def _guild_from(data: dict[str, Any]) -> Guild:
    return Guild(str(data["id"]), str(data["name"]), str(data["owner_id"]), bool(data["owner"]),
                 str(data["permissions"]), _optional(data["icon"], str), bool(data["bot_added"]),
                 [_channel_from(channel) for channel in data["channels"]])


def dump_saved(*, app: App, signing_seed: bytes, owner: User, users: dict[str, User], logged_in: User | None,
               guilds: dict[str, Guild], grants: list[Grant], messages: dict[str, list[dict[str, Any]]],
               last_snowflake: int) -> dict[str, Any]:
    """The stand-in's state as JSON values; it must hold the stand-in's lock meanwhile."""
    now = time.time()
    table: list[Guild] = []
    places: dict[int, int] = {}

    def place(guild: Guild | None) -> int | None:
        if guild is None:
            return None
        if id(guild) not in places:
            places[id(guild)] = len(table)
            table.append(guild)
        return places[id(guild)]

    registered = [place(guild) for guild in guilds.values()]
    kept = [grant for grant in grants
            if not grant.revoked and (grant.refresh_token is not None or grant.expires_at > now)]
    # Whoever a grant or the login names is kept too, though a test may have made them without add_user.
    known = dict(users)
    for user in [owner, *([logged_in] if logged_in is not None else []), *(grant.user for grant in kept)]:
        known.setdefault(user.id, user)
    people = [
        {"id": user.id, "username": user.username, "global_name": user.global_name, "avatar": user.avatar,
         "email": user.email, "verified": user.verified, "locale": user.locale,
         "guilds": [place(guild) for guild in user.guilds]}
        for user in known.values()
    ]
    kept_grants = [
        {"user": grant.user.id, "access_token": grant.access_token, "refresh_token": grant.refresh_token,
         "scopes": list(grant.scopes), "expires_at": grant.expires_at, "client_id": grant.client_id,
         "guild": place(grant.guild), "permissions": grant.permissions, "webhook": grant.webhook,
         "revoked": grant.revoked}
        for grant in kept
    ]
    return {
        "app": asdict(app),
        "signing_seed": signing_seed.hex(),
        "owner": owner.id,
        "logged_in": logged_in.id if logged_in is not None else None,
        "guilds": [_guild_to(guild) for guild in table],
        "registered_guilds": registered,
        "users": people,
        "grants": kept_grants,
        "messages": messages,
        "last_snowflake": last_snowflake,
    }


def load_saved(data: dict[str, Any]) -> Saved:
    """What dump_saved wrote, made again; raises ValueError, KeyError or TypeError for anything else."""
    table = [_guild_from(guild) for guild in data["guilds"]]

    def guild_at(place: Any) -> Guild | None:
        if place is None:
            return None
        if not isinstance(place, int) or not 0 <= place < len(table):
            raise ValueError(f"no server at place {place!r}")
        return table[place]

    users: dict[str, User] = {}
    for person in data["users"]:
        user = User(str(person["id"]), str(person["username"]), _optional(person["global_name"], str),
                    _optional(person["avatar"], str), _optional(person["email"], str), bool(person["verified"]),
                    str(person["locale"]), [guild_at(place) for place in person["guilds"]])
        users[user.id] = user
    guilds: dict[str, Guild] = {}
    for place in data["registered_guilds"]:
        guild = guild_at(place)
        guilds.setdefault(guild.id, guild)
    channels: dict[str, Channel] = {}
    for guild in guilds.values():
        for channel in guild.channels:
            channels.setdefault(channel.id, channel)
    grants = [
        Grant(users[str(grant["user"])], str(grant["access_token"]), _optional(grant["refresh_token"], str),
              tuple(str(scope) for scope in grant["scopes"]), float(grant["expires_at"]), str(grant["client_id"]),
              guild_at(grant["guild"]), str(grant["permissions"]), _optional(grant["webhook"], dict),
              bool(grant["revoked"]))
        for grant in data["grants"]
    ]
    messages = {str(channel): [dict(message) for message in posted] for channel, posted in data["messages"].items()}
    seed = data.get("signing_seed")
    logged_in = data["logged_in"]
    return Saved(
        app=_app_from(data["app"]),
        signing_seed=bytes.fromhex(seed) if seed else None,
        owner=users[str(data["owner"])],
        users=users,
        logged_in=users[str(logged_in)] if logged_in is not None else None,
        guilds=guilds,
        channels=channels,
        grants=grants,
        messages=messages,
        last_snowflake=int(data["last_snowflake"]),
    )
