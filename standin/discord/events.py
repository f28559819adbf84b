"""Discord's webhook events: signed deliveries to the app's events URL, and "remove the app".

- Each stand-in makes its own Ed25519 key pair (from ``signing_seed`` when
  given, so that development keeps one key across restarts); the public key
  (hex) is the application's ``verify_key``, which an operator would paste as
  ``publicKey``. A delivery is a POST of ``{"version": 1, "application_id",
  "type", "event"}`` with ``X-Signature-Ed25519`` over ``X-Signature-Timestamp``
  followed by the body, as Discord sends it.
- Nothing is sent while ``app.event_webhooks_url`` is None (no endpoint
  registered). ``send_event()`` and ``ping()`` answer the status the endpoint
  gave (None when nothing answered); every delivery is kept in ``deliveries``.
- A consent sends APPLICATION_AUTHORIZED before the browser is sent back,
  so the endpoint has it before the app's callback runs. ``remove_app(user)``
  revokes every grant of that person and sends APPLICATION_DEAUTHORIZED, as
  when they remove the app under User Settings → Authorized Apps; the index
  page offers it per person, and ``POST /_standin/remove_app`` does it too.
"""

from __future__ import annotations

import html
import json
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from standin.wire import Answer, Request

from .state import Guild, User

# Discord gives the endpoint 3 seconds to answer.
DELIVERY_TIMEOUT = 3.0
PING, EVENT = 0, 1
GUILD_INSTALL, USER_INSTALL = 0, 1


def new_key_pair(seed: bytes | None = None) -> tuple[Ed25519PrivateKey, str]:
    """A signing key and its public half as the portal shows it (64 hex characters); a 32-byte seed makes it again."""
    private = Ed25519PrivateKey.generate() if seed is None else Ed25519PrivateKey.from_private_bytes(seed)
    return private, private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


def key_seed(private: Ed25519PrivateKey) -> bytes:
    """The 32-byte seed new_key_pair makes `private` from again (a state file keeps it)."""
    return private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())


class EventSender:
    """The events of StandIn: its signing key, what it sent, the "remove the app" page (state under `_lock`)."""

    def sign(self, body: bytes, timestamp: int | None = None) -> dict[str, str]:
        """The signature headers Discord puts on a delivery of `body`."""
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        return {"X-Signature-Ed25519": self._signing_key.sign(stamp.encode() + body).hex(),
                "X-Signature-Timestamp": stamp}

    def ping(self) -> int | None:
        """What Discord sends when the URL is saved in the portal; a working endpoint answers 204."""
        return self._deliver("PING", {"version": 1, "application_id": self.app.client_id, "type": PING})

    def send_event(self, type: str, user: User | str, **data: Any) -> int | None:
        """Sends event `type` about `user` (with `data` beside the user) to the events URL; its status, or None."""
        with self._lock:
            person = user if isinstance(user, User) else self.user(user)
            body = {
                "version": 1, "application_id": self.app.client_id, "type": EVENT,
                "event": {
                    "type": type,
                    "timestamp": datetime.now(timezone.utc).isoformat(timespec="microseconds"),
                    "data": {"user": self._user_object(person, with_email=False), **data},
                },
            }
        return self._deliver(type, body)

    def remove_app(self, user: User | str) -> tuple[int, int | None]:
        """The person removes the app at Discord: (grants revoked, the deauthorized event's status or None)."""
        with self._lock:
            person = user if isinstance(user, User) else self.user(user)
            revoked = [g for g in self._grants if g.user is person and not g.revoked
                       and g.client_id == self.app.client_id]
            with self._changing():
                for grant in revoked:
                    self._kill(grant)
        return len(revoked), self.send_event("APPLICATION_DEAUTHORIZED", person)

    @property
    def deliveries(self) -> list[tuple[str, int | None]]:
        """(event type or PING, the endpoint's status or None) of every delivery tried, oldest first."""
        with self._lock:
            return list(self._deliveries)

    def _authorized_later(self, user: User, scopes: tuple[str, ...], guild: Guild | None) -> None:
        """Queues APPLICATION_AUTHORIZED for a consent; the handler sends it once it let go of the lock."""
        if not self.app.event_webhooks_url:
            return
        data: dict[str, Any] = {"scopes": list(scopes), "integration_type": USER_INSTALL}
        if "bot" in scopes and guild is not None:
            data.update(integration_type=GUILD_INSTALL, guild=self._guild_object(guild))
        self._outbox.append((user, data))

    def _send_queued(self) -> None:
        with self._lock:
            queued, self._outbox = self._outbox, []
        for user, data in queued:
            self.send_event("APPLICATION_AUTHORIZED", user, **data)

    def _deliver(self, name: str, payload: dict[str, Any]) -> int | None:
        """POSTs outside the lock: the endpoint may take its time, and may call the API meanwhile."""
        url = self.app.event_webhooks_url
        if not url:
            return None
        body = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "Discord-Webhook/1.0 (stand-in)",
                   **self.sign(body)}
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=DELIVERY_TIMEOUT) as answer:
                status = answer.status
        except urllib.error.HTTPError as error:
            status = error.code
        except OSError:
            status = None
        with self._lock:
            self._deliveries.append((name, status))
        return status

    # the stand-in's pages

    def index_html(self) -> str:
        """The people who authorized the app, each with the button Discord's Authorized Apps page has."""
        esc = html.escape
        with self._lock:
            people = {g.user.id: g.user for g in self._grants if not g.revoked and g.user is not self.owner}
            url = self.app.event_webhooks_url
        where = f"Events go to <code>{esc(url)}</code>." if url else "No events URL is registered."
        rows = "".join(
            f'<li><span>{esc(p.global_name or p.username)} <span class="muted">@{esc(p.username)}</span></span>'
            f'<form method="post" action="/remove-app"><input type="hidden" name="user_id" value="{esc(p.id)}">'
            f'<button class="danger" name="action" value="remove">Remove the app</button></form></li>'
            for p in people.values()
        )
        listing = f'<ul class="people">{rows}</ul>' if rows else '<p class="muted">Nobody has authorized it.</p>'
        return f'<h2>Authorized apps</h2><p class="muted">{where}</p>{listing}'

    def _remove_app_page(self, request: Request) -> Answer:
        user_id = request.form().get("user_id", "")
        with self._lock:
            person = self._users.get(user_id)
        if person is None:
            return self.page(400, "Remove the app", "<p>Unknown user_id.</p>")
        revoked, status = self.remove_app(person)
        url = self.app.event_webhooks_url
        if not url:
            said = "No events URL is registered, so no event was sent."
        else:
            answer = f"it answered {status}" if status else "nothing answered"
            said = f"APPLICATION_DEAUTHORIZED went to <code>{html.escape(url)}</code>: {answer}."
        name = html.escape(person.global_name or person.username)
        return self.page(200, "App removed", f"<p>{name} removed {html.escape(self.app.name)}: {revoked} "
                                            f"grant(s) revoked. {said}</p><p><a href=\"/\">Back</a></p>")
