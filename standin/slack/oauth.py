"""Slack's OAuth v2: the consent page and ``oauth.v2.access`` (the code exchange and the refresh).

- ``GET /oauth/v2/authorize?client_id&scope&user_scope&redirect_uri&state``:
  scopes comma separated (a space is not a separator), at least one of the
  two lists; ``team`` preselects a workspace. Requests Slack would not show
  (unknown client, unregistered redirect_uri, bad scopes) get an error page,
  never a redirect. Without redirect_uri the app's first registered one is
  used. Allow redirects with ``code`` and ``state``, Cancel with
  ``error=access_denied`` and ``state``; ``state`` is always there, empty when
  none was sent.
- Clicking without a browser: ``GET /oauth/v2/authorize/_approve?<the
  authorize query>&action=authorize|cancel`` does what the consent form's
  POST does and answers the same 302; ``user_id`` acts as that person instead
  of the one set with ``login()``.
- ``oauth.v2.access`` takes the client by HTTP Basic or the form fields, and
  checks in this order: client id (``invalid_client_id``), secret
  (``bad_client_secret``), a redirect_uri sent but not registered
  (``bad_redirect_uri``, before the code), then the grant: a code unknown,
  used or expired is ``invalid_code``; a code with another redirect_uri than
  its authorize request's is ``bad_redirect_uri`` and stays usable; a dead
  refresh token is ``invalid_refresh_token``. Registered redirects match
  exactly (stricter than Slack, which also takes a subdirectory).
- An install issues a bot token (bot scopes asked) and a person's token (user
  scopes asked), new ones each time; with ``app.token_rotation`` each expires
  after ``access_token_ttl`` and has a refresh token, which a refresh swaps
  for a new pair: the old refresh token and the old access token die at once.
"""

from __future__ import annotations

import html
import re
import secrets
import time
from typing import Any
from urllib.parse import urlsplit

from standin.base import hidden_inputs
from standin.wire import Answer, Request, add_query, redirect_answer

from .api import arguments, ok_answer, refusal
from .state import Code, Grant, User, Workspace, new_access_token, new_refresh_token

CODE_TTL = 600.0
SCOPES = re.compile(r"[a-z][a-z.:-]*(,[a-z][a-z.:-]*)*")
# What the consent page says a scope allows, as Slack's does.
SCOPE_WORDS = {
    "chat:write": "Send messages as the app",
    "channels:read": "View basic information about public channels in a workspace",
    "users:read": "View people in a workspace",
    "search:read": "Search a workspace's content",
    "identity.basic": "View information about your identity",
}


def _scopes(value: str) -> tuple[str, ...]:
    return tuple(value.split(",")) if value else ()


class OAuthEndpoints:
    """The OAuth routes of StandIn, on its users, workspaces, codes and grants (held under its `_lock`)."""

    # authorize

    def _authorize_problem(self, params: dict[str, str]) -> str | None:
        """Why the request can't be shown to the person; Slack never redirects these."""
        if params.get("client_id") != self.app.client_id:
            return "Invalid client_id parameter."
        redirect_uri = params.get("redirect_uri", "")
        if redirect_uri:
            parts = urlsplit(redirect_uri)
            if not parts.scheme or not parts.netloc:
                return "The redirect_uri is not an absolute URL."
            if self.app.redirect_uris and redirect_uri not in self.app.redirect_uris:
                return "redirect_uri did not match any configured URIs."
        elif not self.app.redirect_uris:
            return "No redirect_uri was sent, and the app has none registered."
        scope, user_scope = params.get("scope", ""), params.get("user_scope", "")
        if not (scope or user_scope):
            return "Invalid permissions requested: no scope and no user_scope."
        if any(value and not SCOPES.fullmatch(value) for value in (scope, user_scope)):
            return "Invalid permissions requested: scopes are names separated by commas."
        return None

    def _error_page(self, problem: str) -> Answer:
        return self.page(400, "Something went wrong", f"<p>{html.escape(problem)}</p>")

    def _authorize_page(self, request: Request) -> Answer:
        params = request.query
        with self._lock:
            problem = self._authorize_problem(params)
            if problem:
                return self._error_page(problem)
            return self.page(200, f"{self.app.name} is requesting permission to access a workspace",
                             self._consent_html(params, self._logged_in))

    def _consent_html(self, params: dict[str, str], user: User) -> str:
        esc = html.escape
        chosen = params.get("team", "")
        options = "".join(
            f'<option value="{esc(w.id)}"{" selected" if w.id == chosen else ""}>{esc(w.name)}</option>'
            for w in user.workspaces
        )
        head = (
            f'<div class="app"><div class="logo">{esc(self.app.name[:1])}</div><div>'
            f'<strong>{esc(self.app.name)}</strong> <span class="muted">app {esc(self.app.app_id)}</span>'
            f'<div class="muted">Signed in as {esc(user.real_name)} (@{esc(user.name)})</div></div></div>'
        )
        if not options:
            return head + "<p>You are in no workspace where this app could be installed.</p>"
        parts = [
            head,
            f'<form method="post" action="/oauth/v2/authorize">{hidden_inputs(params, skip={"action", "team"})}',
            f'<label for="team">Workspace</label><select id="team" name="team">{options}</select>',
        ]
        for title, scopes in (("The app will be able to", params.get("scope", "")),
                              ("It will be able to act as you and", params.get("user_scope", ""))):
            if scopes:
                items = "".join(f"<li>{esc(SCOPE_WORDS.get(s, s))}</li>" for s in scopes.split(","))
                parts.append(f'<div class="muted">{title}:</div><ul class="scopes">{items}</ul>')
        parts.append('<div class="actions"><button name="action" value="cancel">Cancel</button>'
                     '<button name="action" value="authorize">Allow</button></div></form>')
        return "".join(parts)

    def _authorize_decide(self, request: Request) -> Answer:
        params = request.form() if request.method == "POST" else request.query
        with self._lock:
            problem = self._authorize_problem(params)
            if problem:
                return self._error_page(problem)
            user = self._decider(params)
            if user is None:
                return self._error_page("Unknown user_id.")
            redirect_uri = params.get("redirect_uri") or self.app.redirect_uris[0]
            action = params.get("action")
            if action == "cancel":
                reply = {"error": "access_denied", "state": params.get("state", "")}
                return redirect_answer(add_query(redirect_uri, reply))
            if action != "authorize":
                return self._error_page("action must be authorize or cancel.")
            workspace = self._chosen_workspace(params, user)
            if workspace is None:
                return self._error_page("Pick a workspace you are in.")
            code = Code(secrets.token_hex(20), params.get("redirect_uri", ""), _scopes(params.get("scope", "")),
                        _scopes(params.get("user_scope", "")), user, workspace, time.time() + CODE_TTL)
            self._codes[code.value] = code
            return redirect_answer(add_query(redirect_uri, {"code": code.value, "state": params.get("state", "")}))

    @staticmethod
    def _chosen_workspace(params: dict[str, str], user: User) -> Workspace | None:
        wanted = params.get("team")
        if not wanted:
            return user.workspaces[0] if user.workspaces else None
        return next((w for w in user.workspaces if w.id == wanted), None)

    # oauth.v2.access

    def _client_refusal(self, request: Request, args: dict[str, str]) -> Answer | None:
        client_id, secret = request.basic() or (args.get("client_id", ""), args.get("client_secret", ""))
        if not secrets.compare_digest(client_id.encode(), self.app.client_id.encode()):
            return refusal("invalid_client_id")
        if not secrets.compare_digest(secret.encode(), self.app.client_secret.encode()):
            return refusal("bad_client_secret")
        redirect_uri = args.get("redirect_uri")
        if redirect_uri and self.app.redirect_uris and redirect_uri not in self.app.redirect_uris:
            return refusal("bad_redirect_uri")
        return None

    def _access(self, request: Request) -> Answer:
        args = arguments(request)
        with self._changing():
            refused = self._client_refusal(request, args)
            if refused:
                return refused
            grant_type = args.get("grant_type", "")
            if grant_type == "refresh_token":
                return self._refresh(args)
            if grant_type not in ("", "authorization_code"):
                return refusal("invalid_grant_type")
            return self._exchange(args)

    def _exchange(self, args: dict[str, str]) -> Answer:
        code = self._codes.get(args.get("code", ""))
        if code is None or code.used or code.expires_at <= time.time():
            return refusal("invalid_code")
        if args.get("redirect_uri", "") != code.redirect_uri:
            return refusal("bad_redirect_uri")
        code.used = True
        workspace = code.workspace
        body: dict[str, Any] = {
            "app_id": self.app.app_id,
            "authed_user": {"id": code.user.id},
            "team": {"id": workspace.id, "name": workspace.name},
            "enterprise": None,
            "is_enterprise_install": False,
        }
        if code.bot_scopes:
            bot = self._new_grant("bot", code.user, workspace, code.bot_scopes)
            body.update(self._token_fields(bot), bot_user_id=workspace.bot_user_id)
        if code.user_scopes:
            person = self._new_grant("user", code.user, workspace, code.user_scopes)
            body["authed_user"].update(self._token_fields(person))
        return ok_answer(body)

    def _refresh(self, args: dict[str, str]) -> Answer:
        grant = self._by_refresh.get(args.get("refresh_token", ""))
        if grant is None or grant.revoked:
            return refusal("invalid_refresh_token")
        del self._by_refresh[grant.refresh_token]
        self._by_access.pop(grant.access_token, None)
        grant.access_token = new_access_token(grant.kind, rotation=True)
        grant.refresh_token = new_refresh_token()
        grant.expires_at = time.time() + self.access_token_ttl
        self._by_access[grant.access_token] = grant
        self._by_refresh[grant.refresh_token] = grant
        self._changed()
        body = {"app_id": self.app.app_id, **self._token_fields(grant),
                "team": {"id": grant.workspace.id, "name": grant.workspace.name},
                "enterprise": None, "is_enterprise_install": False}
        if grant.kind == "bot":
            body["bot_user_id"] = grant.workspace.bot_user_id
        return ok_answer(body)

    def _token_fields(self, grant: Grant) -> dict[str, Any]:
        fields: dict[str, Any] = {"scope": ",".join(grant.scopes), "token_type": grant.kind,
                                  "access_token": grant.access_token}
        if grant.refresh_token is not None:
            fields.update(refresh_token=grant.refresh_token,
                          expires_in=max(0, int(round(grant.expires_at - time.time()))))
        return fields

    def _new_grant(self, kind: str, user: User, workspace: Workspace, scopes: tuple[str, ...]) -> Grant:
        rotation = self.app.token_rotation
        grant = Grant(kind, user, workspace, scopes, new_access_token(kind, rotation),
                      new_refresh_token() if rotation else None,
                      time.time() + self.access_token_ttl if rotation else None)
        self._grants.append(grant)
        self._by_access[grant.access_token] = grant
        if grant.refresh_token:
            self._by_refresh[grant.refresh_token] = grant
        self._changed()
        return grant
