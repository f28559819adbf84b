"""What the Slack stand-in remembers: the app, people, workspaces, codes and the tokens it issued.

Ids and secrets have Slack's shapes (client id ``digits.digits``, 32 lowercase
hex secrets, ``U…``/``T…``/``B…`` ids, ``xoxb-``/``xoxp-`` tokens, with
rotation ``xoxe.``-prefixed ones and ``xoxe-1-`` refresh tokens), so that the
connector's validators and the operator's eye take them as Slack's.

``dump_saved`` and ``load_saved`` are what of it a stand-in with a state path
keeps across restarts.
"""

from __future__ import annotations

import secrets
import string
from dataclasses import asdict, dataclass, field, fields
from typing import Any

ID_ALPHABET = string.ascii_uppercase + string.digits
TOKEN_ALPHABET = string.ascii_letters + string.digits


def new_id(prefix: str) -> str:
    """A Slack id: a letter saying what it names (U, T, B, A), then uppercase letters and digits."""
    return prefix + "".join(secrets.choice(ID_ALPHABET) for _ in range(10))


def _digits(count: int) -> str:
    return str(secrets.randbelow(9 * 10 ** (count - 1)) + 10 ** (count - 1))


def _letters(count: int) -> str:
    return "".join(secrets.choice(TOKEN_ALPHABET) for _ in range(count))


def new_access_token(kind: str, rotation: bool) -> str:
    """``xoxb-`` for the bot, ``xoxp-`` for a person; rotation makes it ``xoxe.xoxb-``/``xoxe.xoxp-``."""
    prefix = "xoxb" if kind == "bot" else "xoxp"
    token = f"{prefix}-{_digits(12)}-{_digits(13)}-{_letters(24)}"
    return "xoxe." + token if rotation else token


def new_refresh_token() -> str:
    return f"xoxe-1-{_letters(8)}-{_digits(13)}-{secrets.token_hex(32)}"


@dataclass
class App:
    """The one Slack app; mutable so a test can mimic a misconfigured app or turn token rotation on."""

    client_id: str = "1000000000001.1000000000002"
    client_secret: str = "5a7c0d2e9b3f41c6a8e2d4b6f0c1e3a5"
    signing_secret: str = "c3e5a7b9d1f20486ace13579bdf02468"
    app_id: str = "A0STANDIN01"
    name: str = "Backoffice Stand-in"
    # Empty: any absolute redirect_uri is accepted.
    redirect_uris: list[str] = field(default_factory=list)
    # Off by default, as for a new Slack app: tokens then never expire.
    token_rotation: bool = False


DEFAULT_APP = App()


@dataclass(eq=False)
class Workspace:
    """A workspace, with the user the app's bot has there once installed."""

    id: str
    name: str
    domain: str
    bot_user_id: str
    bot_id: str


@dataclass(eq=False)
class User:
    id: str
    name: str
    real_name: str
    workspaces: list[Workspace] = field(default_factory=list)


@dataclass(eq=False)
class Code:
    value: str
    # As the authorize request sent it ("" when it sent none).
    redirect_uri: str
    bot_scopes: tuple[str, ...]
    user_scopes: tuple[str, ...]
    user: User
    workspace: Workspace
    expires_at: float
    used: bool = False


@dataclass(eq=False)
class Grant:
    """One token: the bot's in a workspace, or a person's; a refresh swaps it in place, a revocation kills it."""

    kind: str
    user: User
    workspace: Workspace
    scopes: tuple[str, ...]
    access_token: str
    refresh_token: str | None
    expires_at: float | None
    revoked: bool = False

    def access_live(self, now: float) -> bool:
        return not self.revoked and (self.expires_at is None or now < self.expires_at)


# Kept state (standin.persist): the JSON a stand-in with a state path saves, and what it makes of it again.
# Codes are not kept (they live ten minutes), nor revoked tokens: after a restart they are unknown, which
# Slack answers as it answers a revoked one (invalid_auth).


@dataclass(eq=False)
class Saved:
    """Everything load_saved makes from a section, ready for the stand-in to take over at once."""

    app: App
    workspaces: dict[str, Workspace]
    users: dict[str, User]
    logged_in: User | None
    grants: list[Grant]


def _app_from(data: dict[str, Any]) -> App:
    """Fields this version does not know are dropped; ones it added since keep their defaults."""
    known = {f.name for f in fields(App)}
    app = App(**{key: value for key, value in data.items() if key in known})
    app.redirect_uris = [str(uri) for uri in app.redirect_uris]
    app.token_rotation = bool(app.token_rotation)
    return app


def dump_saved(*, app: App, workspaces: dict[str, Workspace], users: dict[str, User], logged_in: User | None,
               grants: list[Grant]) -> dict[str, Any]:
    """The stand-in's state as JSON values; it must hold the stand-in's lock meanwhile."""
    kept = [grant for grant in grants if not grant.revoked]
    # Whoever a token or the login names is kept too, though a test may have made them without add_user.
    people = dict(users)
    for user in [*([logged_in] if logged_in is not None else []), *(grant.user for grant in kept)]:
        people.setdefault(user.id, user)
    known = dict(workspaces)
    for workspace in [*(w for user in people.values() for w in user.workspaces), *(g.workspace for g in kept)]:
        known.setdefault(workspace.id, workspace)
    return {
        "app": asdict(app),
        "workspaces": [asdict(workspace) for workspace in known.values()],
        "registered_workspaces": list(workspaces),
        "users": [{"id": user.id, "name": user.name, "real_name": user.real_name,
                   "workspaces": [workspace.id for workspace in user.workspaces]} for user in people.values()],
        "logged_in": logged_in.id if logged_in is not None else None,
        "grants": [{"kind": grant.kind, "user": grant.user.id, "workspace": grant.workspace.id,
                    "scopes": list(grant.scopes), "access_token": grant.access_token,
                    "refresh_token": grant.refresh_token, "expires_at": grant.expires_at}
                   for grant in kept],
    }


def load_saved(data: dict[str, Any]) -> Saved:
    """What dump_saved wrote, made again; raises ValueError, KeyError or TypeError for anything else."""
    known: dict[str, Workspace] = {}
    for item in data["workspaces"]:
        workspace = Workspace(str(item["id"]), str(item["name"]), str(item["domain"]), str(item["bot_user_id"]),
                              str(item["bot_id"]))
        known[workspace.id] = workspace
    users: dict[str, User] = {}
    for item in data["users"]:
        user = User(str(item["id"]), str(item["name"]), str(item["real_name"]),
                    [known[str(workspace)] for workspace in item["workspaces"]])
        users[user.id] = user
    grants = []
    for item in data["grants"]:
        kind = str(item["kind"])
        if kind not in ("bot", "user"):
            raise ValueError(f"unknown token kind {kind!r}")
        expires_at = item["expires_at"]
        grants.append(Grant(kind, users[str(item["user"])], known[str(item["workspace"])],
                            tuple(str(scope) for scope in item["scopes"]), str(item["access_token"]),
                            None if item["refresh_token"] is None else str(item["refresh_token"]),
                            None if expires_at is None else float(expires_at)))
    logged_in = data["logged_in"]
    return Saved(
        app=_app_from(data["app"]),
        workspaces={str(workspace): known[str(workspace)] for workspace in data["registered_workspaces"]},
        users=users,
        logged_in=users[str(logged_in)] if logged_in is not None else None,
        grants=grants,
    )
