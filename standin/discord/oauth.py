"""Discord's OAuth2: the consent page, the token endpoint and the revocation.

- Clicking without a browser: ``GET /oauth2/authorize/_approve?<the authorize
  query>&action=authorize|cancel`` does what the consent form's POST does and
  answers the same 302. An extra ``user_id`` (there or in the POST) acts as that
  user instead of the one set with ``login()``.
- With ``app.redirect_uris`` empty any absolute redirect_uri is accepted; a
  missing redirect_uri is always refused (Discord would quietly use the first
  registered one, which then fails at the exchange).
- A code sent with the wrong redirect_uri answers ``invalid_grant`` but is not
  used up; a missing ``code``/``refresh_token``/``token`` is ``invalid_request``.
- ``client_credentials`` takes HTTP Basic only; the other grants and the
  revocation take Basic or the form fields.
- ``accumulate_scopes = True`` makes a code exchange answer every scope the user
  ever granted, as Discord may.
"""

from __future__ import annotations

import html
import secrets
import time
from typing import Any
from urllib.parse import unquote_plus, urlsplit

from standin.base import hidden_inputs
from standin.wire import Answer, Request, add_query, json_answer, redirect_answer

from .state import Code, Grant, Guild, User, new_token

CODE_TTL = 600.0
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


def oauth_error(status: int, error: str, description: str | None = None) -> Answer:
    payload = {"error": error}
    if description:
        payload["error_description"] = description
    return json_answer(status, payload)


def invalid_grant(name: str) -> Answer:
    return oauth_error(400, "invalid_grant", f'Invalid "{name}" in request.')


class OAuthEndpoints:
    """The OAuth2 routes of StandIn, on its users, codes and grants (held under its `_lock`)."""

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
                return self.page(400, "Authorization error", f"<p>{html.escape(problem)}</p>")
            user = self._logged_in
            scopes = params["scope"].split()
            if not (params.get("prompt") == "none" and self._has_prior_grant(user, scopes)):
                return self.page(200, f"Authorize {self.app.name}", self._consent_html(params, user, scopes))
            answer = self._approve(params, user)
        self._send_queued()
        return answer

    def _has_prior_grant(self, user: User, scopes: list[str]) -> bool:
        """prompt=none skips the screen only for a repeat, and never for bot installs."""
        if GUILD_PICKING_SCOPES & set(scopes):
            return False
        return any(g.user is user and not g.revoked and set(scopes) <= set(g.scopes) for g in self._grants)

    def _consent_html(self, params: dict[str, str], user: User, scopes: list[str]) -> str:
        esc = html.escape
        picks_guild = bool(GUILD_PICKING_SCOPES & set(scopes))
        hidden = hidden_inputs(params, skip={"action", "guild_id"} if picks_guild else {"action"})
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
                return self.page(400, "Authorization error", f"<p>{html.escape(problem)}</p>")
            user = self._decider(params)
            if user is None:
                return self.page(400, "Authorization error", "<p>Unknown user_id.</p>")
            action = params.get("action")
            if action == "cancel":
                return self._deny(params)
            if action != "authorize":
                return self.page(400, "Authorization error", "<p>action must be authorize or cancel.</p>")
            answer = self._approve(params, user)
        self._send_queued()
        return answer

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
                return self.page(400, "Authorization error", "<p>Pick a server where you may add the bot.</p>")
            if "bot" in scopes and not self.app.bot_require_code_grant:
                guild.bot_added = True
                self._changed()
        permissions = str(int(params.get("permissions") or "0"))
        code = Code(secrets.token_urlsafe(22), self.app.client_id, params["redirect_uri"], scopes, user, guild,
                    permissions, time.time() + CODE_TTL)
        self._codes[code.value] = code
        self._authorized_later(user, scopes, guild)
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
        if request.auth("Basic") is not None:
            pair = request.basic()
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
        with self._changing():
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
        self._changed()
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
        self._changed()
