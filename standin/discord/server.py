"""StandIn: the Discord stand-in, its routes and the state tests set up and inspect."""

from __future__ import annotations

import copy
import os
import re
import time
from typing import Any, Iterable

from standin.base import CONTROL_PREFIX, GrantBook, PatternRoutes, ProviderStandIn, Routes
from standin.wire import Answer, Request, json_answer

from .bot import CHANNEL_MESSAGES, GUILD_CHANNELS, BotEndpoints, bot_route
from .events import EventSender, key_seed, new_key_pair
from .oauth import OAuthEndpoints
from .ratelimit import RateLimits, check_rate
from .rest import RestEndpoints, message_answer
from .state import (
    DEFAULT_APP, DISCORD_EPOCH_MS, App, Channel, Code, Grant, Guild, User, dump_saved, load_saved, new_token,
)

API_PREFIX = "/api/v10"
REQUEST_KINDS = (
    "token.authorization_code", "token.refresh_token", "token.client_credentials",
    "revoke", "users_me", "oauth2_me", "applications_me", "guilds", "authorize",
    "guild_channels", "channel_messages",
)
API_KINDS = {
    "/oauth2/token/revoke": "revoke",
    "/users/@me": "users_me",
    "/users/@me/guilds": "guilds",
    "/oauth2/@me": "oauth2_me",
    "/oauth2/applications/@me": "applications_me",
}

STANDIN_CSS = (
    "body{font-family:system-ui,sans-serif;background:#313338;color:#dbdee1;margin:0;padding:2rem 1rem}"
    ".banner{max-width:28rem;margin:0 auto 1rem;background:#fee;color:#600;border:1px solid #c00;"
    "border-radius:6px;padding:.5rem .75rem;font-size:.9rem}"
    ".card{max-width:28rem;margin:0 auto;background:#2b2d31;border-radius:8px;padding:1.5rem;"
    "box-shadow:0 2px 10px rgba(0,0,0,.3)}"
    "h1{font-size:1.25rem;color:#f2f3f5;margin:0 0 .25rem}.muted{color:#949ba4;font-size:.875rem}"
    ".app{display:flex;gap:.75rem;align-items:center;margin-bottom:1rem}"
    ".logo{width:48px;height:48px;border-radius:50%;background:#5865f2;color:#fff;display:flex;"
    "align-items:center;justify-content:center;font-weight:700;font-size:1.25rem}"
    "ul.scopes{list-style:none;padding:0;margin:.5rem 0 1rem}ul.scopes li{padding:.4rem 0;"
    "border-bottom:1px solid #3f4147}ul.scopes li:before{content:'\\2713  ';color:#23a55a}"
    "label{display:block;font-size:.75rem;text-transform:uppercase;font-weight:700;color:#b5bac1;"
    "margin:.5rem 0 .25rem}select{width:100%;padding:.5rem;background:#1e1f22;color:#dbdee1;"
    "border:0;border-radius:4px}.actions{display:flex;justify-content:flex-end;gap:.5rem;"
    "margin-top:1.25rem}button{border:0;border-radius:4px;padding:.6rem 1.25rem;font-size:.9rem;"
    "cursor:pointer}button[value=authorize]{background:#5865f2;color:#fff}"
    "button[value=cancel]{background:transparent;color:#dbdee1}"
    "h2{font-size:1rem;color:#f2f3f5;margin:1.25rem 0 .25rem}code{word-break:break-all}"
    "ul.people{list-style:none;padding:0;margin:.5rem 0}ul.people li{display:flex;align-items:center;"
    "justify-content:space-between;gap:.5rem;padding:.4rem 0;border-bottom:1px solid #3f4147}"
    "ul.people li>span{min-width:0;overflow-wrap:anywhere}a{color:#00a8fc}"
    "button.danger{background:#da373c;color:#fff;padding:.4rem .8rem;white-space:nowrap}"
)


class StandIn(EventSender, BotEndpoints, OAuthEndpoints, RestEndpoints, GrantBook, ProviderStandIn):
    """In-process Discord stand-in; every piece of mutable state is behind `_lock`, the rate limits behind theirs.

    With `state_path` it keeps its app (and events key), people, servers, grants and the bot's messages in
    that file across restarts (standin.persist); what the arguments name (`app`, `redirect_uris`,
    `signing_seed`) wins over what the file says.
    """

    provider = "Discord"
    page_css = STANDIN_CSS
    server_version = "DiscordStandIn/1.0"
    request_kinds = REQUEST_KINDS

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        app: App | None = None,
        redirect_uris: Iterable[str] | None = None,
        access_token_ttl: int = 604800,
        rate_limit: float | None = None,
        global_limit: float | None = None,
        signing_seed: bytes | None = None,
        state_path: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__(host=host, port=port, state_path=state_path)
        self.app = app if app is not None else copy.deepcopy(DEFAULT_APP)
        self._signing_key, self.app.verify_key = new_key_pair(signing_seed)
        # What the arguments set is not taken from a state file.
        self._given = {"app": app is not None, "redirect_uris": redirect_uris is not None,
                       "signing_seed": signing_seed is not None}
        if redirect_uris is not None:
            self.app.redirect_uris = list(redirect_uris)
        self.access_token_ttl = access_token_ttl
        self.accumulate_scopes = False
        self._limits = RateLimits(rate_limit, global_limit)
        self._last_snowflake = 0
        self.owner = User(id="100000000000000002", username="standin_owner", global_name="Stand-in Owner",
                          email="owner@standin.invalid")
        self.reset()
        self._restore_state()

    @property
    def api_base_url(self) -> str:
        return self.base_url + API_PREFIX

    @property
    def authorize_url(self) -> str:
        return self.base_url + "/oauth2/authorize"

    # state set-up

    def reset(self) -> None:
        with self._changing():
            super().reset()
            self._limits.reset()
            self._users: dict[str, User] = {self.owner.id: self.owner}
            self._codes: dict[str, Code] = {}
            self._grants: list[Grant] = []
            self._by_access: dict[str, Grant] = {}
            self._by_refresh: dict[str, Grant] = {}
            self._guilds: dict[str, Guild] = {}
            self._channels: dict[str, Channel] = {}
            self._messages: dict[str, list[dict[str, Any]]] = {}
            self._outbox: list[tuple[User, dict[str, Any]]] = []
            self._deliveries: list[tuple[str, int | None]] = []
            default = self.add_user(id="100000000000000003", username="standin_user", global_name="Stand-in User",
                                    email="standin_user@standin.invalid",
                                    guilds=[{"id": "100000000000000004", "name": "Stand-in User's server"}])
            self._logged_in = default
            self._changed()

    # kept state (standin.persist)

    def dump_state(self) -> dict[str, Any]:
        with self._lock:
            return dump_saved(app=self.app, signing_seed=key_seed(self._signing_key), owner=self.owner,
                              users=self._users, logged_in=self._logged_in, guilds=self._guilds,
                              grants=self._grants, messages=self._messages, last_snowflake=self._last_snowflake)

    def load_state(self, data: dict[str, Any]) -> None:
        saved = load_saved(data)
        with self._lock:
            app = self.app if self._given["app"] else saved.app
            if not self._given["app"] and self._given["redirect_uris"]:
                app.redirect_uris = list(self.app.redirect_uris)
            key, verify_key = self._signing_key, self.app.verify_key
            if not self._given["signing_seed"] and saved.signing_seed is not None:
                key, verify_key = new_key_pair(saved.signing_seed)
            app.verify_key = verify_key
            self.app, self._signing_key = app, key
            self.owner = saved.owner
            self._users = saved.users
            self._logged_in = saved.logged_in
            self._guilds, self._channels = saved.guilds, saved.channels
            self._messages = saved.messages
            self._last_snowflake = max(self._last_snowflake, saved.last_snowflake)
            self._codes = {}
            self._grants = saved.grants
            self._by_access = {g.access_token: g for g in saved.grants if not g.revoked}
            self._by_refresh = {g.refresh_token: g for g in saved.grants if not g.revoked and g.refresh_token}

    def snowflake(self) -> str:
        with self._lock:
            ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
            value = max((ms << 22) | (1 << 17), self._last_snowflake + 1)
            self._last_snowflake = value
            return str(value)

    def add_user(
        self,
        id: str | None = None,
        username: str = "alice",
        global_name: str | None = "Alice",
        avatar: str | None = None,
        email: str | None = "alice@example.com",
        guilds: Iterable[Guild | dict[str, Any] | str] | None = None,
        verified: bool = True,
        locale: str = "en-US",
    ) -> User:
        """guilds=None gives the user one server they own, so bot installs work out of the box."""
        with self._changing():
            user_id = str(id) if id is not None else self.snowflake()
            if user_id in self._users:
                raise ValueError(f"user {user_id} exists")
            user = User(user_id, username, global_name, avatar, email, verified, locale)
            self._users[user_id] = user
            if guilds is None:
                guilds = [{"name": f"{global_name or username}'s server"}]
            for guild in guilds:
                self._attach_guild(user, guild)
            self._changed()
            return user

    def _attach_guild(self, user: User, guild: Guild | dict[str, Any] | str) -> None:
        if isinstance(guild, Guild):
            self._register_guild(guild)
            user.guilds.append(guild)
        elif isinstance(guild, str):
            self.add_guild(user, name=guild)
        else:
            self.add_guild(user, **guild)

    def add_guild(
        self,
        user: User,
        id: str | None = None,
        name: str = "Alice's server",
        owner: bool = True,
        permissions: str = "2147483647",
        icon: str | None = None,
    ) -> Guild:
        with self._lock:
            guild_id = str(id) if id is not None else self.snowflake()
            owner_id = user.id if owner else self.snowflake()
            guild = Guild(guild_id, name, owner_id, owner, str(permissions), icon)
            self._register_guild(guild)
            user.guilds.append(guild)
            self._changed()
            return guild

    def _register_guild(self, guild: Guild) -> None:
        """The bot routes find a server and its channels by id; a new server gets Discord's default channels."""
        if not guild.channels:
            guild.channels = self._default_channels(guild)
        self._guilds.setdefault(guild.id, guild)
        for channel in guild.channels:
            self._channels.setdefault(channel.id, channel)

    def create_grant(
        self, user: User, scopes: str | Iterable[str] = "identify guilds", expires_in: float | None = None,
        guild: Guild | None = None,
    ) -> Grant:
        """Skips the browser dance, for seeding many accounts at once."""
        scope_list = tuple(scopes.split()) if isinstance(scopes, str) else tuple(scopes)
        ttl = self.access_token_ttl if expires_in is None else expires_in
        with self._lock:
            return self._new_grant(user, scope_list, ttl, guild=guild)

    def _new_grant(self, user: User, scopes: tuple[str, ...], ttl: float, *, refresh: bool = True,
                   guild: Guild | None = None, permissions: str = "0") -> Grant:
        grant = Grant(user, new_token(), new_token() if refresh else None, scopes, time.time() + ttl,
                      self.app.client_id, guild, permissions)
        self._grants.append(grant)
        self._by_access[grant.access_token] = grant
        if grant.refresh_token:
            self._by_refresh[grant.refresh_token] = grant
        self._changed()
        return grant

    # fault injection and rate limits (standin.discord.ratelimit says how they behave)

    def clear_faults(self) -> None:
        """Drops every fault still queued (failures, delays, late answers, forced 429s): Discord is well again."""
        super().clear_faults()
        self._limits.clear_forced()

    def rate_limit(self, per_second: float | None = 50) -> None:
        """Every bucket's limit per (route, Authorization) and second; None: unlimited. Starts fresh windows."""
        self._limits.set_per_second(per_second)

    def global_limit(self, per_second: float | None = None) -> None:
        """One limit over all API requests per second, checked before the buckets; None: none."""
        self._limits.set_global(per_second)

    def rate_limit_next(self, count: int = 1, retry_after: float = 0.05, is_global: bool = True,
                        scope: str | None = None) -> None:
        """The next `count` API requests answer 429 with this retry_after, whatever the limits say.

        scope ("user", "global" or "shared") is the X-RateLimit-Scope; by default "global" if is_global.
        """
        self._limits.force(count, retry_after, is_global, scope)

    # inspection

    def stats(self) -> dict[str, Any]:
        with self._lock:
            now = time.time()
            return {
                **super().stats(),
                **self._limits.limits,
                "live_grants": sum(1 for g in self._grants if g.access_live(now)),
                "users": len(self._users),
            }

    # what the shared pipeline asks of a provider

    def kind_of(self, request: Request) -> str | None:
        path = request.path
        if path in ("/oauth2/authorize", "/oauth2/authorize/_approve"):
            return "authorize"
        if not path.startswith(API_PREFIX + "/"):
            return None
        tail = path[len(API_PREFIX):]
        if tail == "/oauth2/token":
            grant_type = request.form().get("grant_type")
            return f"token.{grant_type}" if grant_type else "token"
        route = bot_route(tail)
        return route[0] if route else API_KINDS.get(tail)

    def error_answer(self, status: int) -> Answer:
        return message_answer(status)

    def admit(self, request: Request, kind: str | None) -> tuple[dict[str, str], Answer | None]:
        """Only the API is rate limited."""
        if not (request.path.startswith(API_PREFIX + "/") or request.path == API_PREFIX):
            return {}, None
        route = bot_route(request.path[len(API_PREFIX):])
        major = route[1] if route else ""
        return self._limits.check(kind, request.headers.get("Authorization") or "", major)

    def endpoints(self) -> list[tuple[str, str]]:
        return [("Authorize", self.authorize_url), ("API base", self.api_base_url)]

    def unrouted(self, request: Request) -> Answer | None:
        return self._avatar(request)

    def _build_routes(self) -> Routes:
        api = API_PREFIX
        return {
            "/oauth2/authorize": {"GET": self._authorize_page, "POST": self._authorize_decide},
            "/oauth2/authorize/_approve": {"GET": self._authorize_decide},
            f"{api}/oauth2/token": {"POST": self._token},
            f"{api}/oauth2/token/revoke": {"POST": self._revoke},
            f"{api}/users/@me": {"GET": self._users_me},
            f"{api}/users/@me/guilds": {"GET": self._users_me_guilds},
            f"{api}/oauth2/@me": {"GET": self._oauth2_me},
            f"{api}/oauth2/applications/@me": {"GET": self._applications_me},
            "/remove-app": {"POST": self._remove_app_page},
            **super()._build_routes(),
            f"{CONTROL_PREFIX}/rate_limit": {"POST": self._ctl_rate_limit},
            f"{CONTROL_PREFIX}/events_url": {"POST": self._ctl_events_url},
            f"{CONTROL_PREFIX}/ping": {"POST": self._ctl_ping},
            f"{CONTROL_PREFIX}/remove_app": {"POST": self._ctl_remove_app},
            f"{CONTROL_PREFIX}/remove_bot": {"POST": self._ctl_remove_bot},
            f"{CONTROL_PREFIX}/deny_send": {"POST": self._ctl_deny_send},
            f"{CONTROL_PREFIX}/messages": {"GET": self._ctl_messages},
            f"{CONTROL_PREFIX}/users": {"POST": self._ctl_users},
            f"{CONTROL_PREFIX}/grants": {"POST": self._ctl_grants},
        }

    def _build_pattern_routes(self) -> PatternRoutes:
        return [
            (re.compile(re.escape(API_PREFIX) + GUILD_CHANNELS.pattern), {"GET": self._guild_channels}),
            (re.compile(re.escape(API_PREFIX) + CHANNEL_MESSAGES.pattern), {"POST": self._channel_messages}),
        ]

    # control API

    def _ctl_rate_limit(self, request: Request) -> Answer:
        """Sets only the limits named: {"per_second": n|null} per bucket, {"global_per_second": n|null} overall."""
        def act(data: dict[str, Any]) -> dict[str, Any]:
            unknown = set(data) - {"per_second", "global_per_second"}
            if unknown:
                raise ValueError(f"unknown keys {sorted(unknown)}")
            values = {key: None if data[key] is None else float(data[key]) for key in data}
            for value in values.values():
                check_rate(value)
            if "per_second" in values:
                self.rate_limit(values["per_second"])
            if "global_per_second" in values:
                self.global_limit(values["global_per_second"])
            return self._limits.limits
        return self._ctl(request, act)

    def _ctl_users(self, request: Request) -> Answer:
        allowed = {"id", "username", "global_name", "avatar", "email", "guilds", "verified", "locale"}

        def act(data: dict[str, Any]) -> dict[str, Any]:
            user = self.add_user(**{k: v for k, v in data.items() if k in allowed})
            with self._lock:
                body = self._user_object(user, with_email=True)
                body["guilds"] = [self._partial_guild(g) for g in user.guilds]
            return body
        return self._ctl(request, act)

    def _ctl_grants(self, request: Request) -> Answer:
        def act(data: dict[str, Any]) -> list[dict[str, Any]]:
            count = int(data.get("count", 1))
            scopes = str(data.get("scopes", "identify guilds"))
            expires_in = data.get("expires_in")
            with self._changing():
                fixed = self.user(str(data["user_id"])) if data.get("user_id") else None
                made = []
                for _ in range(count):
                    user = fixed or self.add_user(username=f"seed_{self.snowflake()}", global_name=None,
                                                  email=None, guilds=[])
                    grant = self.create_grant(user, scopes, None if expires_in is None else float(expires_in))
                    made.append({"user_id": user.id, "access_token": grant.access_token,
                                 "refresh_token": grant.refresh_token, "scope": " ".join(grant.scopes),
                                 "expires_in": int(round(grant.expires_at - time.time()))})
                return made
        return self._ctl(request, act)

    def _ctl_events_url(self, request: Request) -> Answer:
        """{"url": "…"} registers the events URL (Webhooks → Endpoint URL); {"url": null} removes it."""
        def act(data: dict[str, Any]) -> dict[str, Any]:
            url = data["url"]
            if url is not None and not str(url).startswith(("http://", "https://")):
                raise ValueError("url must be an http(s) URL or null")
            with self._changing():
                self.app.event_webhooks_url = None if url is None else str(url)
                self._changed()
                return {"url": self.app.event_webhooks_url}
        return self._ctl(request, act)

    def _ctl_ping(self, request: Request) -> Answer:
        return json_answer(200, {"status": self.ping()})

    def _ctl_remove_app(self, request: Request) -> Answer:
        def act(data: dict[str, Any]) -> dict[str, Any]:
            revoked, status = self.remove_app(str(data["user_id"]))
            return {"revoked": revoked, "status": status}
        return self._ctl(request, act)

    def _ctl_remove_bot(self, request: Request) -> Answer:
        def act(data: dict[str, Any]) -> dict[str, Any]:
            self.remove_bot(str(data["guild_id"]))
            return {}
        return self._ctl(request, act)

    def _ctl_deny_send(self, request: Request) -> Answer:
        def act(data: dict[str, Any]) -> dict[str, Any]:
            self.deny_send(str(data["channel_id"]))
            return {}
        return self._ctl(request, act)

    def _ctl_messages(self, request: Request) -> Answer:
        """GET ?channel_id=…: what the bot posted there, oldest first."""
        channel_id = request.query.get("channel_id", "")
        return json_answer(200, self.messages(channel_id))
