"""Slack's Web API as the Backoffice calls it: ``auth.revoke`` and ``auth.test``, and Slack's answer shapes.

- Every answer to a method is JSON with ``"ok"``; a refusal is HTTP 200 with
  ``{"ok": false, "error": "<code>"}``, never an HTTP error status. Only what
  is not a method at all is a 404 (``unknown_method``); an injected fault
  keeps its status (a 429 with ``Retry-After``, as Slack rate limits).
- Arguments come from the query string or a form body, as Slack takes both;
  a token from ``Authorization: Bearer`` or the ``token`` argument.
- No token is ``not_authed``; a token never issued or revoked is
  ``invalid_auth``; a token past its lifetime (rotation) is ``token_expired``.
- ``auth.test`` names the token's scopes in ``X-OAuth-Scopes``; a bot token's
  answer names the bot (``user_id`` its user, ``bot_id``), a person's the person.
- ``auth.revoke`` kills the token and its refresh token; ``test=true`` only
  says what would happen (``"revoked": false``).
"""

from __future__ import annotations

import time
from typing import Any

from standin.wire import Answer, Request, json_answer

from .state import Grant

RETRY_AFTER_SECONDS = 1
ERROR_STATUS = {404: "unknown_method", 405: "method_not_allowed", 429: "ratelimited"}


def ok_answer(payload: dict[str, Any], headers: dict[str, str] | None = None) -> Answer:
    return json_answer(200, {"ok": True, **payload}, headers)


def refusal(error: str) -> Answer:
    """Slack's way to say no: HTTP 200 all the same."""
    return json_answer(200, {"ok": False, "error": error})


def status_answer(status: int) -> Answer:
    """An answer with an HTTP error status (unknown path, injected fault), in Slack's JSON."""
    answer = json_answer(status, {"ok": False, "error": ERROR_STATUS.get(status, "internal_error")})
    if status == 429:
        answer.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return answer


def arguments(request: Request) -> dict[str, str]:
    """A method's arguments: the query string, and a form body over it."""
    return {**request.query, **request.form()}


def is_true(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true")


class ApiEndpoints:
    """The Web API methods of StandIn, on its grants (held under its `_lock`)."""

    def _token_of(self, request: Request) -> str:
        return request.auth("Bearer") or arguments(request).get("token", "")

    def _grant_or_refusal(self, request: Request) -> Grant | Answer:
        token = self._token_of(request)
        if not token:
            return refusal("not_authed")
        grant = self._by_access.get(token)
        if grant is None or grant.revoked:
            return refusal("invalid_auth")
        if not grant.access_live(time.time()):
            return refusal("token_expired")
        return grant

    def _auth_test(self, request: Request) -> Answer:
        with self._lock:
            grant = self._grant_or_refusal(request)
            if isinstance(grant, Answer):
                return grant
            workspace = grant.workspace
            body = {
                "url": f"https://{workspace.domain}.slack-standin.invalid/",
                "team": workspace.name,
                "team_id": workspace.id,
                "is_enterprise_install": False,
            }
            if grant.kind == "bot":
                body.update(user=self.app.name.lower().replace(" ", "_"), user_id=workspace.bot_user_id,
                            bot_id=workspace.bot_id)
            else:
                body.update(user=grant.user.name, user_id=grant.user.id)
            return ok_answer(body, {"X-OAuth-Scopes": ",".join(grant.scopes)})

    def _auth_revoke(self, request: Request) -> Answer:
        with self._lock:
            grant = self._grant_or_refusal(request)
            if isinstance(grant, Answer):
                return grant
            if is_true(arguments(request).get("test")):
                return ok_answer({"revoked": False})
            self._kill(grant)
            return ok_answer({"revoked": True})

    def _kill(self, grant: Grant) -> None:
        grant.revoked = True
        self._by_access.pop(grant.access_token, None)
        if grant.refresh_token:
            self._by_refresh.pop(grant.refresh_token, None)
        self._changed()
