"""StandIn: the Slack stand-in, its routes and the state tests set up and inspect."""

from __future__ import annotations

import copy
import os
import re
import time
from typing import Any, Iterable

from standin.base import CONTROL_PREFIX, GrantBook, ProviderStandIn, Routes
from standin.wire import Answer, Request

from .api import ApiEndpoints, status_answer
from .oauth import OAuthEndpoints
from .state import DEFAULT_APP, App, Code, Grant, User, Workspace, dump_saved, load_saved, new_id

API_PREFIX = "/api"
AUTHORIZE_PATH = "/oauth/v2/authorize"
REQUEST_KINDS = ("authorize", "token.authorization_code", "token.refresh_token", "revoke", "auth_test")
API_KINDS = {"/auth.revoke": "revoke", "/auth.test": "auth_test"}
# How long Slack's rotating tokens live (its expires_in).
ROTATION_TTL = 43200

STANDIN_CSS = (
    "body{font-family:system-ui,sans-serif;background:#f8f8f8;color:#1d1c1d;margin:0;padding:2rem 1rem}"
    ".banner{max-width:30rem;margin:0 auto 1rem;background:#fee;color:#600;border:1px solid #c00;"
    "border-radius:6px;padding:.5rem .75rem;font-size:.9rem}"
    ".card{max-width:30rem;margin:0 auto;background:#fff;border:1px solid #ddd;border-radius:8px;"
    "padding:1.5rem;box-shadow:0 1px 4px rgba(0,0,0,.08)}"
    "h1{font-size:1.25rem;margin:0 0 1rem}.muted{color:#616061;font-size:.875rem}"
    ".app{display:flex;gap:.75rem;align-items:center;margin-bottom:1rem}"
    ".logo{flex:none;width:48px;height:48px;border-radius:8px;background:#4a154b;color:#fff;display:flex;"
    "align-items:center;justify-content:center;font-weight:700;font-size:1.25rem}"
    "ul.scopes{list-style:none;padding:0;margin:.5rem 0 1rem}ul.scopes li{padding:.4rem 0 .4rem 1.25rem;"
    "text-indent:-1.25rem;border-bottom:1px solid #eee}ul.scopes li:before{content:'\\2713  ';color:#007a5a}"
    "label{display:block;font-weight:700;margin:.5rem 0 .25rem}select{width:100%;padding:.5rem;font:inherit;"
    "border:1px solid #bbb;border-radius:4px;background:#fff;margin-bottom:1rem}"
    ".actions{display:flex;justify-content:flex-end;gap:.5rem;margin-top:1.25rem}"
    "button{border:1px solid #bbb;border-radius:4px;padding:.6rem 1.25rem;font-size:.9rem;font-weight:700;"
    "cursor:pointer;background:#fff;color:#1d1c1d}button[value=authorize]{background:#007a5a;"
    "border-color:#007a5a;color:#fff}"
)


def _domain(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "workspace"


class StandIn(OAuthEndpoints, ApiEndpoints, GrantBook, ProviderStandIn):
    """In-process Slack stand-in; every piece of mutable state is behind `_lock`.

    With `state_path` it keeps its app, people, workspaces and tokens in that file across restarts
    (standin.persist); what the arguments name (`app`, `redirect_uris`, `token_rotation`) wins over the file.
    """

    provider = "Slack"
    page_css = STANDIN_CSS
    server_version = "SlackStandIn/1.0"
    request_kinds = REQUEST_KINDS

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        app: App | None = None,
        redirect_uris: Iterable[str] | None = None,
        token_rotation: bool | None = None,
        access_token_ttl: int = ROTATION_TTL,
        state_path: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__(host=host, port=port, state_path=state_path)
        self.app = app if app is not None else copy.deepcopy(DEFAULT_APP)
        if redirect_uris is not None:
            self.app.redirect_uris = list(redirect_uris)
        if token_rotation is not None:
            self.app.token_rotation = token_rotation
        self.access_token_ttl = access_token_ttl
        # What the arguments set is not taken from a state file.
        self._given = {"app": app is not None, "redirect_uris": redirect_uris is not None,
                       "token_rotation": token_rotation is not None}
        self.reset()
        self._restore_state()

    @property
    def api_base_url(self) -> str:
        return self.base_url + API_PREFIX

    @property
    def authorize_url(self) -> str:
        return self.base_url + AUTHORIZE_PATH

    # state set-up

    def reset(self) -> None:
        """Forgets everything but the app: one person, signed in, in two workspaces."""
        with self._changing():
            super().reset()
            self._workspaces: dict[str, Workspace] = {}
            self._codes: dict[str, Code] = {}
            self._grants: list[Grant] = []
            self._by_access: dict[str, Grant] = {}
            self._by_refresh: dict[str, Grant] = {}
            home = self.add_workspace(id="T0STANDIN01", name="Stand-in Workspace")
            lab = self.add_workspace(id="T0STANDIN02", name="Stand-in Lab")
            self._logged_in = self.add_user(id="U0STANDIN01", name="standin.user", real_name="Stand-in User",
                                            workspaces=[home, lab])
            self._changed()

    # kept state (standin.persist)

    def dump_state(self) -> dict[str, Any]:
        with self._lock:
            return dump_saved(app=self.app, workspaces=self._workspaces, users=self._users,
                              logged_in=self._logged_in, grants=self._grants)

    def load_state(self, data: dict[str, Any]) -> None:
        saved = load_saved(data)
        with self._lock:
            app = self.app if self._given["app"] else saved.app
            if not self._given["app"]:
                if self._given["redirect_uris"]:
                    app.redirect_uris = list(self.app.redirect_uris)
                if self._given["token_rotation"]:
                    app.token_rotation = self.app.token_rotation
            self.app = app
            self._workspaces = saved.workspaces
            self._users = saved.users
            self._logged_in = saved.logged_in
            self._codes = {}
            self._grants = saved.grants
            self._by_access = {g.access_token: g for g in saved.grants}
            self._by_refresh = {g.refresh_token: g for g in saved.grants if g.refresh_token}

    def add_workspace(self, id: str | None = None, name: str = "Alice's workspace",
                      domain: str | None = None) -> Workspace:
        with self._lock:
            workspace_id = id or new_id("T")
            if workspace_id in self._workspaces:
                raise ValueError(f"workspace {workspace_id} exists")
            workspace = Workspace(workspace_id, name, domain or _domain(name), new_id("U"), new_id("B"))
            self._workspaces[workspace_id] = workspace
            self._changed()
            return workspace

    def add_user(self, id: str | None = None, name: str = "alice", real_name: str = "Alice",
                 workspaces: Iterable[Workspace | str] | None = None) -> User:
        """workspaces: Workspace objects or ids of existing ones; None gives the person a workspace of their own."""
        with self._changing():
            user_id = id or new_id("U")
            if user_id in self._users:
                raise ValueError(f"user {user_id} exists")
            if workspaces is None:
                workspaces = [self.add_workspace(name=f"{real_name}'s workspace")]
            joined = [w if isinstance(w, Workspace) else self.workspace(w) for w in workspaces]
            user = User(user_id, name, real_name, joined)
            self._users[user_id] = user
            self._changed()
            return user

    def workspace(self, workspace_id: str) -> Workspace:
        with self._lock:
            return self._workspaces[workspace_id]

    # inspection

    def stats(self) -> dict[str, Any]:
        with self._lock:
            now = time.time()
            return {
                **super().stats(),
                "live_grants": sum(1 for g in self._grants if g.access_live(now)),
                "users": len(self._users),
                "workspaces": len(self._workspaces),
            }

    # what the shared pipeline asks of a provider

    def kind_of(self, request: Request) -> str | None:
        path = request.path
        if path in (AUTHORIZE_PATH, AUTHORIZE_PATH + "/_approve"):
            return "authorize"
        if path == API_PREFIX + "/oauth.v2.access":
            grant_type = request.form().get("grant_type") or request.query.get("grant_type")
            return "token.refresh_token" if grant_type == "refresh_token" else "token.authorization_code"
        return API_KINDS.get(path[len(API_PREFIX):]) if path.startswith(API_PREFIX + "/") else None

    def error_answer(self, status: int) -> Answer:
        return status_answer(status)

    def endpoints(self) -> list[tuple[str, str]]:
        return [("Authorize", self.authorize_url), ("API base", self.api_base_url)]

    def _build_routes(self) -> Routes:
        api = API_PREFIX
        return {
            AUTHORIZE_PATH: {"GET": self._authorize_page, "POST": self._authorize_decide},
            AUTHORIZE_PATH + "/_approve": {"GET": self._authorize_decide},
            f"{api}/oauth.v2.access": {"GET": self._access, "POST": self._access},
            f"{api}/auth.revoke": {"GET": self._auth_revoke, "POST": self._auth_revoke},
            f"{api}/auth.test": {"GET": self._auth_test, "POST": self._auth_test},
            **super()._build_routes(),
            f"{CONTROL_PREFIX}/app": {"POST": self._ctl_app},
            f"{CONTROL_PREFIX}/workspaces": {"POST": self._ctl_workspaces},
            f"{CONTROL_PREFIX}/users": {"POST": self._ctl_users},
        }

    # control API

    def _ctl_app(self, request: Request) -> Answer:
        """Sets only what is named: {"token_rotation": bool, "redirect_uris": [url, ...]}."""
        def act(data: dict[str, Any]) -> dict[str, Any]:
            unknown = set(data) - {"token_rotation", "redirect_uris"}
            if unknown:
                raise ValueError(f"unknown keys {sorted(unknown)}")
            with self._changing():
                if "token_rotation" in data:
                    self.app.token_rotation = bool(data["token_rotation"])
                if "redirect_uris" in data:
                    self.app.redirect_uris = [str(uri) for uri in data["redirect_uris"]]
                self._changed()
                return {"token_rotation": self.app.token_rotation, "redirect_uris": list(self.app.redirect_uris)}
        return self._ctl(request, act)

    def _ctl_workspaces(self, request: Request) -> Answer:
        def act(data: dict[str, Any]) -> dict[str, Any]:
            workspace = self.add_workspace(**{k: v for k, v in data.items() if k in ("id", "name", "domain")})
            return {"id": workspace.id, "name": workspace.name, "domain": workspace.domain}
        return self._ctl(request, act)

    def _ctl_users(self, request: Request) -> Answer:
        """{"name", "real_name", "id", "workspaces": [team id, ...]}; without workspaces, one of their own."""
        def act(data: dict[str, Any]) -> dict[str, Any]:
            user = self.add_user(**{k: v for k, v in data.items() if k in ("id", "name", "real_name", "workspaces")})
            return {"id": user.id, "name": user.name, "workspaces": [w.id for w in user.workspaces]}
        return self._ctl(request, act)
