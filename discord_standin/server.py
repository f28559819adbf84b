"""A local stand-in for the parts of Discord the Backoffice talks to.

It is a real HTTP server so that the project's HTTP clients, timeouts,
retries and keep-alive pools are exercised exactly as against Discord, while
tests keep full control: who is logged in, which call fails, how slow it is,
and what was asked. Behaviour follows /work/shared/discord-api.md.

Things a user of the stand-in should know:

- Clicking without a browser: ``GET /oauth2/authorize/_approve?<the authorize
  query>&action=authorize|cancel`` does what the consent form's POST does and
  answers the same 302. An extra ``user_id`` (there or in the POST) acts as that
  user instead of the one set with ``login()``.
- With ``app.redirect_uris`` empty any absolute redirect_uri is accepted; a
  missing redirect_uri is always refused (Discord would quietly use the first
  registered one, which then fails at the exchange).
- A Bearer token lacking the scope an endpoint needs (``identify`` for
  ``/users/@me``, ``guilds`` for ``/users/@me/guilds``) answers 401
  ``{"message": "401: Unauthorized", "code": 0}``, like a bad token.
- A code sent with the wrong redirect_uri answers ``invalid_grant`` but is not
  used up; a missing ``code``/``refresh_token``/``token`` is ``invalid_request``.
- ``client_credentials`` takes HTTP Basic only; the other grants and the
  revocation take Basic or the form fields.
- Fault kinds match by prefix: ``fail_next("token")`` hits any grant type,
  ``fail_next("token.refresh_token")`` only refreshes.
- ``accumulate_scopes = True`` makes a code exchange answer every scope the user
  ever granted, as Discord may.

Rate limits (only under ``/api/v10``), after Discord's:

- Every route has its own bucket, named by an opaque hash in
  ``X-RateLimit-Bucket`` (``bucket_of(kind)``): the token endpoint (all grant
  types) is one, the revocation, ``/users/@me``, ``/users/@me/guilds``,
  ``/oauth2/@me`` and ``/oauth2/applications/@me`` one each, unknown paths
  share one. Counters are per (bucket, Authorization header value): each
  Bearer token has its own, the token endpoint called with HTTP Basic shares
  one for the application, and requests without Authorization (client
  credentials in the form, say) share the empty one.
- ``rate_limit(n)`` (``--rate-limit``, ``POST /_standin/rate_limit
  {"per_second": n}``) sets the limit of every such counter: a fixed window of
  one second that starts at the first request after the previous one ended.
  Without a limit the headers still count down from 10000 and nothing is
  refused. Beyond the limit: 429 ``{"message": "You are being rate limited.",
  "retry_after": <to the window's end>, "global": false}`` with
  ``X-RateLimit-Scope: user``, ``Retry-After`` (whole seconds, at least 1) and
  the bucket headers at Remaining 0; the request is not carried out.
- ``global_limit(n)`` (``--global-rate-limit``, ``{"global_per_second": n}``)
  is one such window over every API request, checked before the buckets (a
  request it lets through counts even if its bucket then refuses it). Beyond
  it: 429 with ``"global": true``, ``X-RateLimit-Global: true``,
  ``X-RateLimit-Scope: global``, ``Retry-After`` and no bucket headers.
- ``rate_limit_next()`` forces 429s before either check, without using up
  either window; a forced non-global one carries the route's bucket headers
  with Reset-After equal to its retry_after.
- Changing a limit starts fresh windows; ``reset()`` restores the
  constructor's limits. ``count()`` counts every request received, refused or
  not; ``count_429()`` and ``stats()["rate_limited"]`` count the 429 answers
  sent (those from ``fail_next(..., 429)`` included; unknown paths only in the
  total).

Slow answers: ``delay_next`` sleeps before the request is handled (nothing
happened yet when the client gives up); ``delay_answer_next`` handles it first
and then holds the answer back, as when Discord rotates the tokens of a
refresh whose answer arrives after the client's timeout.
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import html
import json
import math
import secrets
import socket
import struct
import sys
import threading
import time
import traceback
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterable
from urllib.parse import parse_qs, unquote_plus, urlencode, urlsplit, urlunsplit

API_PREFIX = "/api/v10"
CONTROL_PREFIX = "/_standin"
DISCORD_EPOCH_MS = 1420070400000
CODE_TTL = 600.0
UNLIMITED_RATE = 10000
MANAGE_GUILD = 1 << 5
ADMINISTRATOR = 1 << 3
DENIED_DESCRIPTION = "The resource owner or authorization server denied the request"

KNOWN_SCOPES = frozenset(
    {
        "activities.read", "activities.write", "applications.builds.read",
        "applications.builds.upload", "applications.commands",
        "applications.commands.permissions.update", "applications.commands.update",
        "applications.entitlements", "applications.store.update", "bot",
        "connections", "dm_channels.read", "email", "gdm.join", "guilds",
        "guilds.join", "guilds.members.read", "identify", "messages.read",
        "openid", "relationships.read", "role_connections.write", "rpc",
        "rpc.activities.write", "rpc.notifications.read", "rpc.voice.read",
        "rpc.voice.write", "voice", "webhook.incoming",
    }
)
GUILD_PICKING_SCOPES = frozenset({"bot", "webhook.incoming"})
# What the consent page says a scope allows, as Discord's does.
SCOPE_WORDS = {
    "identify": "Access your username, avatar, and banner",
    "email": "Access your email address",
    "guilds": "Know what servers you're in",
    "bot": "Add a bot to a server",
    "applications.commands": "Use application commands",
    "webhook.incoming": "Post messages to a channel through a webhook",
}
CLIENT_CREDENTIALS_SCOPES = frozenset(
    {"identify", "email", "guilds", "connections", "applications.commands.update",
     "applications.commands.permissions.update", "applications.entitlements"}
)

REQUEST_KINDS = (
    "token.authorization_code", "token.refresh_token", "token.client_credentials",
    "revoke", "users_me", "oauth2_me", "applications_me", "guilds", "authorize",
)
RATE_LIMIT_SCOPES = ("user", "global", "shared")
UNKNOWN_ROUTE = "unknown"


def bucket_of(kind: str | None) -> str:
    """The opaque X-RateLimit-Bucket of a request kind's route: every grant type shares the token route's."""
    route = kind.split(".")[0] if kind else UNKNOWN_ROUTE
    return hashlib.sha1(route.encode()).hexdigest()[:16]


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
    verify_key: str = "0" * 64
    integration_types_config: dict[str, Any] = field(default_factory=_recommended_install_config)


DEFAULT_APP = App()


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


@dataclass
class Answer:
    """What a handler wants sent; the request handler does the wire work."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    send_after: float = 0.0


@dataclass
class _Window:
    """One fixed one-second rate-limit window; it opens at the first request after the last one closed."""

    start: float = 0.0
    used: int = 0

    def roll(self, now: float) -> None:
        if now >= self.start + 1.0:
            self.start, self.used = now, 0

    @property
    def end(self) -> float:
        return self.start + 1.0


def json_answer(status: int, payload: Any, headers: dict[str, str] | None = None) -> Answer:
    body = json.dumps(payload).encode()
    return Answer(status, body, "application/json", dict(headers or {}))


def message_answer(status: int, code: int = 0, message: str | None = None) -> Answer:
    """Discord's REST error shape, e.g. {"message": "401: Unauthorized", "code": 0}."""
    text = message or f"{status}: {HTTPStatus(status).phrase}"
    return json_answer(status, {"message": text, "code": code})


def oauth_error(status: int, error: str, description: str | None = None) -> Answer:
    payload = {"error": error}
    if description:
        payload["error_description"] = description
    return json_answer(status, payload)


def invalid_grant(name: str) -> Answer:
    return oauth_error(400, "invalid_grant", f'Invalid "{name}" in request.')


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
)


def html_answer(status: int, title: str, body_html: str) -> Answer:
    page = (
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)} | Local Discord stand-in (not Discord)</title>"
        f"<style>{STANDIN_CSS}</style></head><body>"
        "<p class=\"banner\">Local Discord stand-in for development and tests. This is not Discord.</p>"
        f"<div class=\"card\"><h1>{html.escape(title)}</h1>{body_html}</div></body></html>"
    )
    return Answer(status, page.encode(), "text/html; charset=utf-8")


def redirect_answer(url: str) -> Answer:
    return Answer(302, b"", "text/plain", {"Location": url})


def add_query(url: str, params: dict[str, str]) -> str:
    """Keeps whatever query the registered redirect already has."""
    parts = urlsplit(url)
    extra = urlencode(params)
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def first_values(query: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(query, keep_blank_values=True).items()}


def iso_utc(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat()


def new_token() -> str:
    return secrets.token_urlsafe(24)


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: Any
    body: bytes

    @property
    def mime(self) -> str:
        return (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()

    def form(self) -> dict[str, str]:
        if self.mime != "application/x-www-form-urlencoded":
            return {}
        return first_values(self.body.decode("utf-8", "replace"))

    def json(self) -> dict[str, Any]:
        if not self.body:
            return {}
        data = json.loads(self.body)
        if not isinstance(data, dict):
            raise ValueError("JSON object expected")
        return data

    def auth(self, scheme: str) -> str | None:
        """The credential after `scheme` in Authorization, or None."""
        value = self.headers.get("Authorization") or ""
        prefix = scheme + " "
        if value[: len(prefix)].lower() == prefix.lower():
            return value[len(prefix):].strip()
        return None


class StandIn:
    """In-process Discord stand-in; every piece of mutable state is behind `_lock`."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        app: App | None = None,
        redirect_uris: Iterable[str] | None = None,
        access_token_ttl: int = 604800,
        rate_limit: float | None = None,
        global_limit: float | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.app = app if app is not None else copy.deepcopy(DEFAULT_APP)
        if redirect_uris is not None:
            self.app.redirect_uris = list(redirect_uris)
        self.access_token_ttl = access_token_ttl
        self.accumulate_scopes = False
        self._initial_rate = _check_rate(rate_limit)
        self._initial_global = _check_rate(global_limit)
        self._lock = threading.RLock()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self._last_snowflake = 0
        self._routes = self._build_routes()
        self.owner = User(id="100000000000000002", username="standin_owner", global_name="Stand-in Owner",
                          email="owner@standin.invalid")
        self.reset()

    # lifecycle

    def start(self) -> "StandIn":
        self._bind()
        if self._thread is None:
            self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,),
                                            name="discord-standin", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        httpd, thread = self._httpd, self._thread
        self._httpd, self._thread = None, None
        if httpd is None:
            return
        if thread is not None:
            httpd.shutdown()
            thread.join(5)
        httpd.close_all()

    def __enter__(self) -> "StandIn":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _bind(self) -> None:
        """Binds lazily so base_url is usable before start() even with port 0."""
        if self._httpd is None:
            self._httpd = _Server((self.host, self.port), _Handler, self)
            self.port = self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        if self.port == 0:
            self._bind()
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def api_base_url(self) -> str:
        return self.base_url + API_PREFIX

    @property
    def authorize_url(self) -> str:
        return self.base_url + "/oauth2/authorize"

    # state set-up

    def reset(self) -> None:
        with self._lock:
            self._users: dict[str, User] = {self.owner.id: self.owner}
            self._codes: dict[str, Code] = {}
            self._grants: list[Grant] = []
            self._by_access: dict[str, Grant] = {}
            self._by_refresh: dict[str, Grant] = {}
            self._calls: list[tuple[str, str, str | None]] = []
            self._counts: dict[str, int] = {}
            self._faults: list[tuple[str, int]] = []
            self._delays: list[tuple[str, float]] = []
            self._late_answers: list[tuple[str, float]] = []
            self._forced_429: list[tuple[float, bool, str]] = []
            self._rate_limited = 0
            self._rate_limited_counts: dict[str, int] = {}
            self._per_second = self._initial_rate
            self._global_per_second = self._initial_global
            self._buckets: dict[tuple[str, str], _Window] = {}
            self._global_window = _Window()
            self._next_prune = 0.0
            default = self.add_user(id="100000000000000003", username="standin_user", global_name="Stand-in User",
                                    email="standin_user@standin.invalid",
                                    guilds=[{"id": "100000000000000004", "name": "Stand-in User's server"}])
            self._logged_in = default

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
        with self._lock:
            user_id = str(id) if id is not None else self.snowflake()
            if user_id in self._users:
                raise ValueError(f"user {user_id} exists")
            user = User(user_id, username, global_name, avatar, email, verified, locale)
            self._users[user_id] = user
            if guilds is None:
                guilds = [{"name": f"{global_name or username}'s server"}]
            for guild in guilds:
                self._attach_guild(user, guild)
            return user

    def _attach_guild(self, user: User, guild: Guild | dict[str, Any] | str) -> None:
        if isinstance(guild, Guild):
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
            user.guilds.append(guild)
            return guild

    def user(self, user_id: str) -> User:
        with self._lock:
            return self._users[str(user_id)]

    def login(self, user: User) -> None:
        with self._lock:
            self._logged_in = user

    @property
    def logged_in(self) -> User:
        with self._lock:
            return self._logged_in

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
        return grant

    # fault injection

    def clear_faults(self) -> None:
        """Drops every fault still queued (failures, delays, late answers, forced 429s): Discord is well again."""
        with self._lock:
            self._faults.clear()
            self._delays.clear()
            self._late_answers.clear()
            self._forced_429.clear()

    def fail_next(self, kind: str, status: int = 500, count: int = 1) -> None:
        """kind is a request kind or a prefix of one: "token" matches every grant type."""
        with self._lock:
            self._faults.extend([(kind, int(status))] * count)

    def delay_next(self, kind: str, seconds: float = 3.0, count: int = 1) -> None:
        """Sleeps before handling: a client that gives up meanwhile changed nothing."""
        with self._lock:
            self._delays.extend([(kind, float(seconds))] * count)

    def delay_answer_next(self, kind: str, seconds: float = 3.0, count: int = 1) -> None:
        """Handles the request (a refresh rotates the tokens) and only then holds the answer back `seconds`.

        It applies to the next requests of `kind` that reach their handler, not to ones refused by a rate
        limit or answered by fail_next.
        """
        with self._lock:
            self._late_answers.extend([(kind, float(seconds))] * count)

    def rate_limit(self, per_second: float | None = 50) -> None:
        """Every bucket's limit per (route, Authorization) and second; None: unlimited. Starts fresh windows."""
        per_second = _check_rate(per_second)
        with self._lock:
            self._per_second = per_second
            self._buckets = {}

    def global_limit(self, per_second: float | None = None) -> None:
        """One limit over all API requests per second, checked before the buckets; None: none."""
        per_second = _check_rate(per_second)
        with self._lock:
            self._global_per_second = per_second
            self._global_window = _Window()

    def rate_limit_next(self, count: int = 1, retry_after: float = 0.05, is_global: bool = True,
                        scope: str | None = None) -> None:
        """The next `count` API requests answer 429 with this retry_after, whatever the limits say.

        scope ("user", "global" or "shared") is the X-RateLimit-Scope; by default "global" if is_global.
        """
        if scope is None:
            scope = "global" if is_global else "user"
        if scope not in RATE_LIMIT_SCOPES:
            raise ValueError(f"scope must be one of {RATE_LIMIT_SCOPES}, not {scope!r}")
        with self._lock:
            self._forced_429.extend([(float(retry_after), bool(is_global), scope)] * count)

    # inspection

    @property
    def calls(self) -> list[tuple[str, str, str | None]]:
        with self._lock:
            return list(self._calls)

    def count(self, kind: str) -> int:
        """Exact kind, or a prefix: count("token") sums every grant type."""
        with self._lock:
            return sum(n for k, n in self._counts.items() if _kind_matches(k, kind))

    def count_429(self, kind: str | None = None) -> int:
        """429 answers sent: for a kind or prefix as count() takes, or all of them (unknown paths too) with None."""
        with self._lock:
            if kind is None:
                return self._rate_limited
            return sum(n for k, n in self._rate_limited_counts.items() if _kind_matches(k, kind))

    @property
    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    @property
    def grants(self) -> list[Grant]:
        """Grants not revoked; the objects are live, so a test may age `expires_at`."""
        with self._lock:
            return [g for g in self._grants if not g.revoked]

    def access_token_valid(self, token: str) -> bool:
        with self._lock:
            grant = self._by_access.get(token)
            return grant is not None and grant.access_live(time.time())

    def refresh_token_valid(self, token: str) -> bool:
        with self._lock:
            grant = self._by_refresh.get(token)
            return grant is not None and not grant.revoked

    def stats(self) -> dict[str, Any]:
        with self._lock:
            now = time.time()
            return {
                "counts": {kind: self.count(kind) for kind in REQUEST_KINDS},
                "live_grants": sum(1 for g in self._grants if g.access_live(now)),
                "users": len(self._users),
                "calls": len(self._calls),
                "per_second": self._per_second,
                "global_per_second": self._global_per_second,
                "rate_limited": self._rate_limited,
                "rate_limited_counts": {kind: self.count_429(kind) for kind in REQUEST_KINDS},
            }

    # request pipeline

    def handle(self, request: Request) -> Answer:
        kind = _kind_of(request)
        grant_type = kind[len("token."):] if kind and kind.startswith("token.") else None
        with self._lock:
            self._calls.append((request.method, request.path, grant_type))
            if kind:
                self._counts[kind] = self._counts.get(kind, 0) + 1
            delay = self._take(self._delays, kind)
        if delay:
            time.sleep(delay)
        is_api = request.path.startswith(API_PREFIX + "/") or request.path == API_PREFIX
        credential = request.headers.get("Authorization") or ""
        limit_headers, limited = self._rate_check(kind, credential) if is_api else ({}, None)
        answer = limited or self._answer(request, kind)
        answer.headers = {**limit_headers, **answer.headers}
        if answer.status == 429:
            with self._lock:
                self._rate_limited += 1
                if kind:
                    self._rate_limited_counts[kind] = self._rate_limited_counts.get(kind, 0) + 1
        if answer.send_after > 0:
            time.sleep(answer.send_after)
        return answer

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

    def _answer(self, request: Request, kind: str | None) -> Answer:
        with self._lock:
            status = self._take(self._faults, kind)
        if status:
            return message_answer(status)
        methods = self._routes.get(request.path)
        if methods is None:
            return self._avatar(request) or message_answer(404)
        handler = methods.get(request.method)
        if handler is None:
            answer = message_answer(405)
            answer.headers["Allow"] = ", ".join(sorted(methods))
            return answer
        with self._lock:
            late = self._take(self._late_answers, kind)
        answer = handler(request)
        answer.send_after = late or 0.0
        return answer

    @staticmethod
    def _take(queue: list[tuple[str, Any]], kind: str | None) -> Any:
        if not kind:
            return None
        for index, (wanted, value) in enumerate(queue):
            if _kind_matches(kind, wanted):
                del queue[index]
                return value
        return None

    def _rate_check(self, kind: str | None, credential: str) -> tuple[dict[str, str], Answer | None]:
        """Forced 429s, then the global window, then the window of (route's bucket, credential)."""
        bucket = bucket_of(kind)
        with self._lock:
            now = time.time()
            self._prune(now)
            shown = _allowed(self._per_second)
            if self._forced_429:
                retry_after, is_global, scope = self._forced_429.pop(0)
                headers = {} if is_global else _limit_headers(shown, 0, now + retry_after, retry_after, bucket)
                return {}, _too_many(retry_after, is_global, scope, headers)
            if self._global_per_second is not None:
                window = self._global_window
                window.roll(now)
                if window.used >= _allowed(self._global_per_second):
                    return {}, _too_many(_ceil_ms(window.end - now), True, "global", {})
                window.used += 1
            window = self._buckets.get((bucket, credential))
            if window is None:
                window = self._buckets[(bucket, credential)] = _Window()
            window.roll(now)
            reset_after = _ceil_ms(window.end - now)
            if self._per_second is not None and window.used >= shown:
                headers = _limit_headers(shown, 0, window.end, reset_after, bucket)
                return {}, _too_many(reset_after, False, "user", headers)
            window.used += 1
            return _limit_headers(shown, max(0, shown - window.used), window.end, reset_after, bucket), None

    def _prune(self, now: float) -> None:
        """Forgets closed windows now and then, so a run over many tokens does not keep them all."""
        if now >= self._next_prune:
            self._buckets = {key: w for key, w in self._buckets.items() if now < w.end}
            self._next_prune = now + 5.0

    def _build_routes(self) -> dict[str, dict[str, Callable[[Request], Answer]]]:
        api = API_PREFIX
        return {
            "/": {"GET": self._index},
            "/oauth2/authorize": {"GET": self._authorize_page, "POST": self._authorize_decide},
            "/oauth2/authorize/_approve": {"GET": self._authorize_decide},
            f"{api}/oauth2/token": {"POST": self._token},
            f"{api}/oauth2/token/revoke": {"POST": self._revoke},
            f"{api}/users/@me": {"GET": self._users_me},
            f"{api}/users/@me/guilds": {"GET": self._users_me_guilds},
            f"{api}/oauth2/@me": {"GET": self._oauth2_me},
            f"{api}/oauth2/applications/@me": {"GET": self._applications_me},
            f"{CONTROL_PREFIX}/reset": {"POST": self._ctl_reset},
            f"{CONTROL_PREFIX}/rate_limit": {"POST": self._ctl_rate_limit},
            f"{CONTROL_PREFIX}/fail_next": {"POST": self._ctl_fail_next},
            f"{CONTROL_PREFIX}/delay_next": {"POST": self._ctl_delay_next},
            f"{CONTROL_PREFIX}/delay_answer_next": {"POST": self._ctl_delay_answer_next},
            f"{CONTROL_PREFIX}/clear_faults": {"POST": self._ctl_clear_faults},
            f"{CONTROL_PREFIX}/users": {"POST": self._ctl_users},
            f"{CONTROL_PREFIX}/login": {"POST": self._ctl_login},
            f"{CONTROL_PREFIX}/stats": {"GET": self._ctl_stats},
            f"{CONTROL_PREFIX}/grants": {"POST": self._ctl_grants},
        }

    def _index(self, request: Request) -> Answer:
        items = "".join(
            f"<li>{html.escape(label)}: <code>{html.escape(url)}</code></li>"
            for label, url in (("Authorize", self.authorize_url), ("API base", self.api_base_url))
        )
        return html_answer(200, "Discord stand-in", f"<ul>{items}</ul>")

    # authorize

    def _authorize_problem(self, params: dict[str, str]) -> str | None:
        """Why the request can't be shown to the user; Discord never redirects these."""
        if params.get("client_id") != self.app.client_id:
            return "Unknown client_id."
        if params.get("response_type") != "code":
            return "response_type must be code."
        redirect_uri = params.get("redirect_uri", "")
        parts = urlsplit(redirect_uri)
        if not redirect_uri or not parts.scheme or not parts.netloc:
            return "Missing or malformed redirect_uri."
        if self.app.redirect_uris and redirect_uri not in self.app.redirect_uris:
            return "Invalid OAuth2 redirect_uri: it is not registered for this application."
        scopes = params.get("scope", "").split()
        if not scopes:
            return "Missing scope."
        unknown = [s for s in scopes if s not in KNOWN_SCOPES]
        if unknown:
            return "Invalid scope: " + " ".join(unknown)
        if not params.get("permissions", "0").isdigit():
            return "permissions must be an integer."
        return None

    def _authorize_page(self, request: Request) -> Answer:
        params = request.query
        with self._lock:
            problem = self._authorize_problem(params)
            if problem:
                return html_answer(400, "Authorization error", f"<p>{html.escape(problem)}</p>")
            user = self._logged_in
            scopes = params["scope"].split()
            if params.get("prompt") == "none" and self._has_prior_grant(user, scopes):
                return self._approve(params, user)
            return html_answer(200, f"Authorize {self.app.name}", self._consent_html(params, user, scopes))

    def _has_prior_grant(self, user: User, scopes: list[str]) -> bool:
        """prompt=none skips the screen only for a repeat, and never for bot installs."""
        if GUILD_PICKING_SCOPES & set(scopes):
            return False
        return any(g.user is user and not g.revoked and set(scopes) <= set(g.scopes) for g in self._grants)

    def _consent_html(self, params: dict[str, str], user: User, scopes: list[str]) -> str:
        esc = html.escape
        picks_guild = bool(GUILD_PICKING_SCOPES & set(scopes))
        hidden = "".join(
            f'<input type="hidden" name="{esc(k)}" value="{esc(v)}">'
            for k, v in params.items() if k != "action" and not (picks_guild and k == "guild_id")
        )
        scope_items = "".join(f"<li>{esc(SCOPE_WORDS.get(s, s))}</li>" for s in scopes)
        parts = [
            f'<div class="app"><div class="logo">{esc(self.app.name[:1])}</div><div>'
            f"<strong>{esc(self.app.name)}</strong> wants to access your account"
            f'<div class="muted">Signed in as {esc(user.global_name or user.username)} '
            f"(@{esc(user.username)}) · application id {esc(self.app.client_id)}</div></div></div>",
            f'<div class="muted">This will allow the application to:</div><ul class="scopes">{scope_items}</ul>',
            f'<form method="post" action="/oauth2/authorize">{hidden}',
        ]
        if picks_guild:
            parts.append(self._guild_select_html(params, user))
        parts.append('<div class="actions"><button name="action" value="cancel">Cancel</button>'
                     '<button name="action" value="authorize">Authorize</button></div></form>')
        return "".join(parts)

    def _guild_select_html(self, params: dict[str, str], user: User) -> str:
        esc = html.escape
        chosen = params.get("guild_id", "")
        guilds = [g for g in user.guilds if g.can_install()]
        if params.get("disable_guild_select") == "true" and chosen:
            guilds = [g for g in guilds if g.id == chosen]
        if not guilds:
            return "<p>You have no server where you may add this application.</p>"
        options = "".join(
            f'<option value="{esc(g.id)}"{" selected" if g.id == chosen else ""}>{esc(g.name)}</option>'
            for g in guilds
        )
        return f'<label for="guild_id">Add to server</label><select id="guild_id" name="guild_id">{options}</select>'

    def _authorize_decide(self, request: Request) -> Answer:
        params = request.form() if request.method == "POST" else request.query
        with self._lock:
            problem = self._authorize_problem(params)
            if problem:
                return html_answer(400, "Authorization error", f"<p>{html.escape(problem)}</p>")
            user = self._decider(params)
            if user is None:
                return html_answer(400, "Authorization error", "<p>Unknown user_id.</p>")
            action = params.get("action")
            if action == "cancel":
                return self._deny(params)
            if action != "authorize":
                return html_answer(400, "Authorization error", "<p>action must be authorize or cancel.</p>")
            return self._approve(params, user)

    def _decider(self, params: dict[str, str]) -> User | None:
        """`user_id` lets a non-browser test act as someone without touching the global login."""
        user_id = params.get("user_id")
        return self._users.get(user_id) if user_id else self._logged_in

    def _deny(self, params: dict[str, str]) -> Answer:
        reply = {"error": "access_denied", "error_description": DENIED_DESCRIPTION}
        if "state" in params:
            reply["state"] = params["state"]
        return redirect_answer(add_query(params["redirect_uri"], reply))

    def _approve(self, params: dict[str, str], user: User) -> Answer:
        scopes = tuple(params["scope"].split())
        guild = None
        if GUILD_PICKING_SCOPES & set(scopes):
            guild = self._chosen_guild(params, user)
            if guild is None:
                return html_answer(400, "Authorization error", "<p>Pick a server where you may add the bot.</p>")
            if "bot" in scopes and not self.app.bot_require_code_grant:
                guild.bot_added = True
        permissions = str(int(params.get("permissions") or "0"))
        code = Code(secrets.token_urlsafe(22), self.app.client_id, params["redirect_uri"], scopes, user, guild,
                    permissions, time.time() + CODE_TTL)
        self._codes[code.value] = code
        reply = {"code": code.value}
        if "state" in params:
            reply["state"] = params["state"]
        if "bot" in scopes:
            reply.update(guild_id=guild.id, permissions=permissions)
        return redirect_answer(add_query(params["redirect_uri"], reply))

    @staticmethod
    def _chosen_guild(params: dict[str, str], user: User) -> Guild | None:
        eligible = [g for g in user.guilds if g.can_install()]
        wanted = params.get("guild_id")
        if not wanted:
            return eligible[0] if eligible else None
        return next((g for g in eligible if g.id == wanted), None)

    # token endpoint

    def _client_ok(self, request: Request, form: dict[str, str], basic_only: bool = False) -> bool:
        """Basic wins when present; otherwise the form fields, as Discord accepts both."""
        basic = request.auth("Basic")
        if basic is not None:
            pair = _decode_basic(basic)
            if pair is None:
                return False
            client_id, secret = pair
            return self._is_client(client_id, secret) or self._is_client(unquote_plus(client_id), unquote_plus(secret))
        if basic_only:
            return False
        return self._is_client(form.get("client_id", ""), form.get("client_secret", ""))

    def _is_client(self, client_id: str, secret: str) -> bool:
        return (secrets.compare_digest(client_id.encode(), self.app.client_id.encode())
                and secrets.compare_digest(secret.encode(), self.app.client_secret.encode()))

    def _token(self, request: Request) -> Answer:
        if request.mime != "application/x-www-form-urlencoded":
            return oauth_error(400, "invalid_request", "The request body must be application/x-www-form-urlencoded.")
        form = request.form()
        grant_type = form.get("grant_type", "")
        handlers = {
            "authorization_code": self._exchange_code,
            "refresh_token": self._refresh,
            "client_credentials": self._client_credentials,
        }
        if not self._client_ok(request, form, basic_only=grant_type == "client_credentials"):
            return oauth_error(401, "invalid_client")
        handler = handlers.get(grant_type)
        if handler is None:
            return oauth_error(400, "unsupported_grant_type", 'Invalid "grant_type" in request.')
        with self._lock:
            return handler(form)

    def _token_body(self, grant: Grant) -> dict[str, Any]:
        body = {
            "access_token": grant.access_token,
            "token_type": "Bearer",
            "expires_in": max(0, int(round(grant.expires_at - time.time()))),
        }
        if grant.refresh_token is not None:
            body["refresh_token"] = grant.refresh_token
        body["scope"] = " ".join(grant.scopes)
        return body

    def _exchange_code(self, form: dict[str, str]) -> Answer:
        value = form.get("code", "")
        if not value:
            return oauth_error(400, "invalid_request", 'Missing "code" in request.')
        code = self._codes.get(value)
        if code is None or code.used or code.expires_at <= time.time() or code.client_id != self.app.client_id:
            return invalid_grant("code")
        if form.get("redirect_uri") != code.redirect_uri:
            return invalid_grant("redirect_uri")
        code.used = True
        grant = self._new_grant(code.user, self._granted_scopes(code), self.access_token_ttl,
                                guild=code.guild, permissions=code.permissions)
        body = self._token_body(grant)
        if "bot" in code.scopes and code.guild is not None:
            code.guild.bot_added = True
            body["guild"] = self._guild_object(code.guild)
            # The role Discord makes for a bot that joins, with the permissions granted.
            body["guild"]["roles"] = [
                {"id": code.guild.id, "name": "@everyone", "permissions": "0", "managed": False},
                {"id": self.snowflake(), "name": self.app.name, "permissions": code.permissions,
                 "managed": True, "tags": {"bot_id": self.app.client_id}},
            ]
        if "webhook.incoming" in code.scopes and code.guild is not None:
            grant.webhook = self._webhook_object(code.guild)
            body["webhook"] = grant.webhook
        return json_answer(200, body)

    def _granted_scopes(self, code: Code) -> tuple[str, ...]:
        """With accumulate_scopes, answer everything ever granted, as Discord may."""
        scopes = list(code.scopes)
        if self.accumulate_scopes:
            for grant in self._grants:
                if grant.user is code.user and grant.refresh_token:
                    scopes.extend(s for s in grant.scopes if s not in scopes)
        return tuple(scopes)

    def _refresh(self, form: dict[str, str]) -> Answer:
        value = form.get("refresh_token", "")
        if not value:
            return oauth_error(400, "invalid_request", 'Missing "refresh_token" in request.')
        grant = self._by_refresh.get(value)
        if grant is None or grant.revoked or grant.client_id != self.app.client_id:
            return invalid_grant("refresh_token")
        del self._by_refresh[grant.refresh_token]
        self._by_access.pop(grant.access_token, None)
        grant.access_token, grant.refresh_token = new_token(), new_token()
        grant.expires_at = time.time() + self.access_token_ttl
        self._by_access[grant.access_token] = grant
        self._by_refresh[grant.refresh_token] = grant
        return json_answer(200, self._token_body(grant))

    def _client_credentials(self, form: dict[str, str]) -> Answer:
        scopes = tuple(form.get("scope", "").split())
        if not scopes or any(s not in CLIENT_CREDENTIALS_SCOPES for s in scopes):
            return oauth_error(400, "invalid_scope", 'Invalid "scope" in request.')
        grant = self._new_grant(self.owner, scopes, self.access_token_ttl, refresh=False)
        return json_answer(200, self._token_body(grant))

    def _revoke(self, request: Request) -> Answer:
        if request.mime != "application/x-www-form-urlencoded":
            return oauth_error(400, "invalid_request", "The request body must be application/x-www-form-urlencoded.")
        form = request.form()
        if not self._client_ok(request, form):
            return oauth_error(401, "invalid_client")
        token = form.get("token", "")
        if not token:
            return oauth_error(400, "invalid_request", 'Missing "token" in request.')
        with self._lock:
            grant = self._by_access.get(token) or self._by_refresh.get(token)
            if grant is not None and grant.client_id == self.app.client_id:
                self._kill(grant)
        return json_answer(200, {})

    def _kill(self, grant: Grant) -> None:
        grant.revoked = True
        self._by_access.pop(grant.access_token, None)
        if grant.refresh_token:
            self._by_refresh.pop(grant.refresh_token, None)

    # REST

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
        return body

    def _bot_guild_count(self) -> int:
        ids = {g.id for u in self._users.values() for g in u.guilds if g.bot_added}
        return len(ids)

    # control API

    @staticmethod
    def _ctl(request: Request, action: Callable[[dict[str, Any]], Any]) -> Answer:
        try:
            return json_answer(200, action(request.json()))
        except (ValueError, KeyError, TypeError) as exc:
            return json_answer(400, {"message": f"bad control request: {exc!r}"})

    def _ctl_reset(self, request: Request) -> Answer:
        self.reset()
        return json_answer(200, {})

    def _ctl_rate_limit(self, request: Request) -> Answer:
        """Sets only the limits named: {"per_second": n|null} per bucket, {"global_per_second": n|null} overall."""
        def act(data: dict[str, Any]) -> dict[str, Any]:
            unknown = set(data) - {"per_second", "global_per_second"}
            if unknown:
                raise ValueError(f"unknown keys {sorted(unknown)}")
            values = {key: None if data[key] is None else float(data[key]) for key in data}
            for value in values.values():
                _check_rate(value)
            if "per_second" in values:
                self.rate_limit(values["per_second"])
            if "global_per_second" in values:
                self.global_limit(values["global_per_second"])
            with self._lock:
                return {"per_second": self._per_second, "global_per_second": self._global_per_second}
        return self._ctl(request, act)

    def _ctl_fail_next(self, request: Request) -> Answer:
        def act(data: dict[str, Any]) -> dict[str, Any]:
            self.fail_next(str(data["kind"]), int(data.get("status", 500)), int(data.get("count", 1)))
            return {}
        return self._ctl(request, act)

    def _ctl_delay_next(self, request: Request) -> Answer:
        def act(data: dict[str, Any]) -> dict[str, Any]:
            self.delay_next(str(data["kind"]), float(data.get("seconds", 3.0)), int(data.get("count", 1)))
            return {}
        return self._ctl(request, act)

    def _ctl_clear_faults(self, request: Request) -> Answer:
        self.clear_faults()
        return json_answer(200, {})

    def _ctl_delay_answer_next(self, request: Request) -> Answer:
        def act(data: dict[str, Any]) -> dict[str, Any]:
            self.delay_answer_next(str(data["kind"]), float(data.get("seconds", 3.0)), int(data.get("count", 1)))
            return {}
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

    def _ctl_login(self, request: Request) -> Answer:
        def act(data: dict[str, Any]) -> dict[str, Any]:
            user = self.user(str(data["user_id"]))
            self.login(user)
            return {"user_id": user.id}
        return self._ctl(request, act)

    def _ctl_stats(self, request: Request) -> Answer:
        return json_answer(200, self.stats())

    def _ctl_grants(self, request: Request) -> Answer:
        def act(data: dict[str, Any]) -> list[dict[str, Any]]:
            count = int(data.get("count", 1))
            scopes = str(data.get("scopes", "identify guilds"))
            expires_in = data.get("expires_in")
            with self._lock:
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


def _kind_matches(kind: str, wanted: str) -> bool:
    return kind == wanted or kind.startswith(wanted + ".")


def _kind_of(request: Request) -> str | None:
    path = request.path
    if path in ("/oauth2/authorize", "/oauth2/authorize/_approve"):
        return "authorize"
    if not path.startswith(API_PREFIX + "/"):
        return None
    tail = path[len(API_PREFIX):]
    if tail == "/oauth2/token":
        grant_type = request.form().get("grant_type")
        return f"token.{grant_type}" if grant_type else "token"
    return {
        "/oauth2/token/revoke": "revoke",
        "/users/@me": "users_me",
        "/users/@me/guilds": "guilds",
        "/oauth2/@me": "oauth2_me",
        "/oauth2/applications/@me": "applications_me",
    }.get(tail)


def _png_square(size: int, rgb: tuple[int, int, int]) -> bytes:
    """A PNG of one colour, made with the standard library."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" + bytes(rgb) * size
    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(row * size)) + chunk(b"IEND", b""))


def _decode_basic(value: str) -> tuple[str, str] | None:
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, sep, secret = decoded.partition(":")
    return (client_id, secret) if sep else None


def _check_rate(per_second: float | None) -> float | None:
    if per_second is not None and (not isinstance(per_second, (int, float)) or per_second < 0
                                   or math.isnan(per_second)):
        raise ValueError(f"a rate limit is a number >= 0 or None, not {per_second!r}")
    return per_second


def _allowed(per_second: float | None) -> int:
    """Requests a window lets through; without a limit the headers still count down from UNLIMITED_RATE."""
    return UNLIMITED_RATE if per_second is None else math.ceil(per_second)


def _ceil_ms(seconds: float) -> float:
    """Rounded up to the millisecond, so a client that waits that long finds the window over."""
    return max(0.0, math.ceil(seconds * 1000 - 1e-6) / 1000)


def _limit_headers(limit: int, remaining: int, reset: float, reset_after: float, bucket: str) -> dict[str, str]:
    return {
        "X-RateLimit-Limit": str(limit),
        "X-RateLimit-Remaining": str(remaining),
        "X-RateLimit-Reset": f"{math.ceil(reset * 1000) / 1000:.3f}",
        "X-RateLimit-Reset-After": f"{max(0.0, reset_after):.3f}",
        "X-RateLimit-Bucket": bucket,
    }


def _too_many(retry_after: float, is_global: bool, scope: str, headers: dict[str, str]) -> Answer:
    """Discord's 429; a global one carries no bucket headers."""
    body = {"message": "You are being rate limited.", "retry_after": round(retry_after, 3), "global": is_global}
    headers = dict(headers)
    headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    headers["X-RateLimit-Scope"] = scope
    if is_global:
        headers["X-RateLimit-Global"] = "true"
    return json_answer(429, body, headers)


class _Server(ThreadingHTTPServer):
    """Tracks open connections so stop() also ends idle keep-alive ones."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], handler: type, standin: StandIn) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.standin = standin
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request: socket.socket, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: socket.socket) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_all(self) -> None:
        self.server_close()
        with self._open_lock:
            sockets, self._open = list(self._open), set()
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up (e.g. after its own timeout) is normal here, not an error."""
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "DiscordStandIn/1.0"
    timeout = 60
    disable_nagle_algorithm = True
    server: _Server

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: request lines carry codes and tokens, and tests run thousands of them."""

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        request = Request(self.command, parts.path, first_values(parts.query), self.headers, self._read_body())
        try:
            answer = self.server.standin.handle(request)
        except Exception:
            traceback.print_exc()
            answer = message_answer(500)
        self._send(answer)

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._read_chunked()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _read_chunked(self) -> bytes:
        chunks = []
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(chunks)
            chunks.append(self.rfile.read(size))
            self.rfile.readline()

    def _send(self, answer: Answer) -> None:
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(answer.body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(answer.body)
