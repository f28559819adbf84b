"""What the Slack stand-in remembers: the app, people, workspaces, codes and the tokens it issued.

Ids and secrets have Slack's shapes (client id ``digits.digits``, 32 lowercase
hex secrets, ``U…``/``T…``/``B…`` ids, ``xoxb-``/``xoxp-`` tokens, with
rotation ``xoxe.``-prefixed ones and ``xoxe-1-`` refresh tokens), so that the
connector's validators and the operator's eye take them as Slack's.
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass, field

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
