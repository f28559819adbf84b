"""What every provider's stand-in shares: the request pipeline, its faults, its counts and its control API.

A stand-in is a real HTTP server so that the project's HTTP clients, timeouts,
retries and keep-alive pools are exercised exactly as against the provider,
while tests keep full control: who is logged in, which call fails, how slow it
is, and what was asked. It uses the standard library only, so that a benchmark
can run it as a process of its own, without Django.

A provider's stand-in names the kinds of request it serves (Discord's
``token.refresh_token``, say). Fault kinds match by prefix up to a dot:
``fail_next("token")`` hits any grant type, ``fail_next("token.refresh_token")``
only refreshes; ``count()`` and ``count_429()`` take a kind the same way.

Slow answers: ``delay_next`` sleeps before the request is handled (nothing
happened yet when the client gives up); ``delay_answer_next`` handles it first
and then holds the answer back, as when a provider rotates the tokens of a
refresh whose answer arrives after the client's timeout.

The person signed in at the provider (``login()``) is the one a consent page
speaks to; its ``_approve`` shortcut may name another with ``user_id``.

The control API under ``/_standin`` does over HTTP what the methods do, for a
stand-in running in another process; each provider adds its own routes.
``serve_until_stopped`` runs one as a process of its own (``python -m
standin.<provider>``).

Kept state: with ``state_path`` a stand-in loads what it saved there when it
is made and saves again after every change worth keeping (people, servers or
workspaces, grants and their tokens, its app), under its lock; see
``standin.persist``. A method that changes such state calls ``_changed()``;
one that makes several changes at once wraps them in ``_changing()``, so the
file is written once, when the outermost change ends. Without a path (the
default) nothing is written anywhere.
"""

from __future__ import annotations

import contextlib
import functools
import html
import os
import re
import signal
import threading
import time
from http import HTTPStatus
from pathlib import Path
from typing import Any, Callable, Collection, Iterator, Self

from .persist import StateFile, UnreadableState, logger
from .wire import Answer, Request, Server, json_answer

CONTROL_PREFIX = "/_standin"

Routes = dict[str, dict[str, Callable[[Request], Answer]]]
# Routes with ids in the path; each handler also gets the pattern's named groups as keywords.
PatternRoutes = list[tuple[re.Pattern[str], dict[str, Callable[..., Answer]]]]


def kind_matches(kind: str, wanted: str) -> bool:
    return kind == wanted or kind.startswith(wanted + ".")


def hidden_inputs(params: dict[str, str], skip: Collection[str] = ()) -> str:
    """The authorize query as a consent form's hidden fields, so that its POST carries the request on."""
    return "".join(
        f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
        for k, v in params.items() if k not in skip
    )


def _interrupt(signum: int, frame: object) -> None:
    """A benchmark harness stops a stand-in with SIGTERM; treat it like Ctrl-C so the port is released cleanly."""
    raise KeyboardInterrupt


class GrantBook:
    """What a test asks of any stand-in's grants; each keeps ``_grants``, ``_by_access``,
    ``_by_refresh`` and ``_lock``."""

    @property
    def grants(self):
        """Grants not revoked; the objects are live, so a test may age `expires_at`."""
        with self._lock:
            return [g for g in self._grants if not g.revoked]

    def access_token_valid(self, token):
        with self._lock:
            grant = self._by_access.get(token)
            return grant is not None and grant.access_live(time.time())

    def refresh_token_valid(self, token):
        with self._lock:
            grant = self._by_refresh.get(token)
            return grant is not None and not grant.revoked


class ProviderStandIn:
    """A provider's stand-in: what it serves is the subclass's; every piece of mutable state is behind `_lock`.

    A subclass sets `provider` (the name its pages disclaim), `page_css`,
    `server_version` and `request_kinds`, adds its routes to `_build_routes`,
    says what kind each request is (`kind_of`) and how it answers an error
    (`error_answer`), and calls `reset()` once its own state is in place;
    its reset puts its users in `_users` and the one signed in in `_logged_in`.
    """

    provider = "Provider"
    page_css = ""
    server_version = "StandIn/1.0"
    request_kinds: tuple[str, ...] = ()

    def __init__(self, host: str = "127.0.0.1", port: int = 0,
                 state_path: str | os.PathLike[str] | None = None) -> None:
        self.host = host
        self.port = port
        self._lock = threading.RLock()
        self._httpd: Server | None = None
        self._thread: threading.Thread | None = None
        self._routes = self._build_routes()
        self._pattern_routes = self._build_pattern_routes()
        self._state_file = StateFile(state_path) if state_path else None
        # Saving starts once the saved state is loaded (_restore_state), so the fresh one never overwrites it.
        self._keeping = False
        self._change_depth = 0
        self._dirty = False

    # lifecycle

    def start(self) -> Self:
        self._bind()
        if self._thread is None:
            self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,),
                                            name=f"{self.provider.lower()}-standin", daemon=True)
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

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def serve_until_stopped(self, *lines: str) -> None:
        """Serves in the foreground, after printing `lines`, until Ctrl-C or SIGTERM: `python -m` runs it so."""
        signal.signal(signal.SIGTERM, _interrupt)
        self.start()
        print("\n".join(lines), flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def _bind(self) -> None:
        """Binds lazily so base_url is usable before start() even with port 0."""
        if self._httpd is None:
            self._httpd = Server((self.host, self.port), self)
            self.port = self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        if self.port == 0:
            self._bind()
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    # kept state (standin.persist)

    @property
    def state_path(self) -> Path | None:
        """The file this stand-in keeps its state in; None: memory only."""
        return self._state_file.path if self._state_file is not None else None

    @property
    def state_section(self) -> str:
        return self.provider.lower()

    def dump_state(self) -> dict[str, Any]:
        """What the subclass keeps across restarts, as JSON values; called under the lock."""
        return {}

    def load_state(self, data: dict[str, Any]) -> None:
        """Puts back what dump_state gave, all or nothing; raises ValueError, KeyError or TypeError if it cannot."""

    def _restore_state(self) -> None:
        """The subclass calls this once its fresh state is in place: loads the saved one, then keeps saving."""
        if self._state_file is None:
            return
        with self._lock:
            try:
                data = self._state_file.read(self.state_section)
                if data is not None:
                    self.load_state(data)
            except UnreadableState as problem:
                self._start_afresh(str(problem))
            except (ValueError, KeyError, TypeError, AttributeError) as problem:
                self._start_afresh(f'its "{self.state_section}" section cannot be used: '
                                   f"{type(problem).__name__}: {problem}")
            else:
                if data is not None:
                    logger.info("%s stand-in: loaded its state from %s.", self.provider, self._state_file.path)
            self._keeping = True

    def _start_afresh(self, why: str) -> None:
        logger.warning("%s stand-in: ignored the state saved in %s, as %s; it starts afresh, and its next "
                       "change replaces that file.", self.provider, self._state_file.path, why)
        self.reset()

    @contextlib.contextmanager
    def _changing(self) -> Iterator[None]:
        """Holds the lock over several changes; the state is saved once, when the outermost one ends."""
        with self._lock:
            self._change_depth += 1
            try:
                yield
            finally:
                self._change_depth -= 1
                if self._change_depth == 0 and self._dirty:
                    self._dirty = False
                    self._save()

    def _changed(self) -> None:
        """Something worth keeping changed: saved now, or when the change around this one ends."""
        with self._changing():
            self._dirty = True

    def _save(self) -> None:
        if self._state_file is None or not self._keeping:
            return
        try:
            self._state_file.write(self.state_section, self.dump_state())
        except (OSError, TypeError, ValueError):
            logger.exception("%s stand-in: could not save its state in %s", self.provider, self._state_file.path)

    def reset(self) -> None:
        """Forgets what was asked and every queued fault; a subclass resets its own state after this."""
        with self._lock:
            self._calls: list[tuple[str, str, str | None]] = []
            self._counts: dict[str, int] = {}
            self._faults: list[tuple[str, int]] = []
            self._delays: list[tuple[str, float]] = []
            self._late_answers: list[tuple[str, float]] = []
            self._rate_limited = 0
            self._rate_limited_counts: dict[str, int] = {}
            self._users: dict[str, Any] = {}
            self._logged_in: Any = None

    # the person at the provider

    def user(self, user_id: str) -> Any:
        with self._lock:
            return self._users[str(user_id)]

    def login(self, user: Any) -> None:
        """The consent page now speaks to `user`, as if they had signed in at the provider."""
        with self._changing():
            self._logged_in = user
            self._changed()

    @property
    def logged_in(self) -> Any:
        with self._lock:
            return self._logged_in

    def _decider(self, params: dict[str, str]) -> Any:
        """`user_id` lets a non-browser test act as someone without touching the global login; None: unknown."""
        user_id = params.get("user_id")
        return self._users.get(user_id) if user_id else self._logged_in

    # what a subclass says about its provider

    def endpoints(self) -> list[tuple[str, str]]:
        """(label, URL) of what a client points at, for the index page."""
        return []

    def kind_of(self, request: Request) -> str | None:
        """The request's kind, which faults, delays and counts are keyed by; None: none of them apply."""
        return None

    def error_answer(self, status: int) -> Answer:
        """The provider's own shape of an error with this status (unknown path, injected fault, crash)."""
        return json_answer(status, {"error": HTTPStatus(status).phrase})

    def admit(self, request: Request, kind: str | None) -> tuple[dict[str, str], Answer | None]:
        """Headers every answer to this request carries, and the refusal (a 429) that replaces the answer."""
        return {}, None

    def unrouted(self, request: Request) -> Answer | None:
        """An answer for a path with no route (a CDN's files, say); None: 404."""
        return None

    def page(self, status: int, title: str, body_html: str) -> Answer:
        """An HTML page that cannot be mistaken for the provider's own."""
        name = html.escape(self.provider)
        page = (
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)} | Local {name} stand-in (not {name})</title>"
            f"<style>{self.page_css}</style></head><body>"
            f"<p class=\"banner\">Local {name} stand-in for development and tests. This is not {name}.</p>"
            f"<div class=\"card\"><h1>{html.escape(title)}</h1>{body_html}</div></body></html>"
        )
        return Answer(status, page.encode(), "text/html; charset=utf-8")

    # fault injection

    def clear_faults(self) -> None:
        """Drops every fault still queued: the provider is well again."""
        with self._lock:
            self._faults.clear()
            self._delays.clear()
            self._late_answers.clear()

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

    # inspection

    @property
    def calls(self) -> list[tuple[str, str, str | None]]:
        """(method, path, the kind's part after its first dot: a grant type, say) of every request."""
        with self._lock:
            return list(self._calls)

    def count(self, kind: str) -> int:
        """Exact kind, or a prefix: count("token") sums every grant type."""
        with self._lock:
            return sum(n for k, n in self._counts.items() if kind_matches(k, kind))

    def count_429(self, kind: str | None = None) -> int:
        """429 answers sent: for a kind or prefix as count() takes, or all of them (unknown paths too) with None."""
        with self._lock:
            if kind is None:
                return self._rate_limited
            return sum(n for k, n in self._rate_limited_counts.items() if kind_matches(k, kind))

    @property
    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "counts": {kind: self.count(kind) for kind in self.request_kinds},
                "calls": len(self._calls),
                "rate_limited": self._rate_limited,
                "rate_limited_counts": {kind: self.count_429(kind) for kind in self.request_kinds},
            }

    # request pipeline

    def handle(self, request: Request) -> Answer:
        kind = self.kind_of(request)
        detail = (kind.partition(".")[2] or None) if kind else None
        with self._lock:
            self._calls.append((request.method, request.path, detail))
            if kind:
                self._counts[kind] = self._counts.get(kind, 0) + 1
            delay = self._take(self._delays, kind)
        if delay:
            time.sleep(delay)
        admit_headers, refused = self.admit(request, kind)
        answer = refused or self._answer(request, kind)
        answer.headers = {**admit_headers, **answer.headers}
        if answer.status == 429:
            with self._lock:
                self._rate_limited += 1
                if kind:
                    self._rate_limited_counts[kind] = self._rate_limited_counts.get(kind, 0) + 1
        if answer.send_after > 0:
            time.sleep(answer.send_after)
        return answer

    def _answer(self, request: Request, kind: str | None) -> Answer:
        with self._lock:
            status = self._take(self._faults, kind)
        if status:
            return self.error_answer(status)
        methods = self._methods_for(request.path)
        if methods is None:
            return self.unrouted(request) or self.error_answer(404)
        handler = methods.get(request.method)
        if handler is None:
            answer = self.error_answer(405)
            answer.headers["Allow"] = ", ".join(sorted(methods))
            return answer
        with self._lock:
            late = self._take(self._late_answers, kind)
        answer = handler(request)
        answer.send_after = late or 0.0
        return answer

    def _methods_for(self, path: str) -> dict[str, Callable[[Request], Answer]] | None:
        methods = self._routes.get(path)
        if methods is not None:
            return methods
        for pattern, handlers in self._pattern_routes:
            match = pattern.fullmatch(path)
            if match:
                return {verb: functools.partial(handler, **match.groupdict()) for verb, handler in handlers.items()}
        return None

    @staticmethod
    def _take(queue: list[tuple[str, Any]], kind: str | None) -> Any:
        if not kind:
            return None
        for index, (wanted, value) in enumerate(queue):
            if kind_matches(kind, wanted):
                del queue[index]
                return value
        return None

    # control API

    def _index(self, request: Request) -> Answer:
        items = "".join(
            f"<li>{html.escape(label)}: <code>{html.escape(url)}</code></li>" for label, url in self.endpoints()
        )
        return self.page(200, f"{self.provider} stand-in", f"<ul>{items}</ul>{self.index_html()}")

    def index_html(self) -> str:
        """More of the index page, after the endpoints: what a provider lets a person do there."""
        return ""

    def _build_routes(self) -> Routes:
        return {
            "/": {"GET": self._index},
            f"{CONTROL_PREFIX}/reset": {"POST": self._ctl_reset},
            f"{CONTROL_PREFIX}/fail_next": {"POST": self._ctl_fail_next},
            f"{CONTROL_PREFIX}/delay_next": {"POST": self._ctl_delay_next},
            f"{CONTROL_PREFIX}/delay_answer_next": {"POST": self._ctl_delay_answer_next},
            f"{CONTROL_PREFIX}/clear_faults": {"POST": self._ctl_clear_faults},
            f"{CONTROL_PREFIX}/stats": {"GET": self._ctl_stats},
            f"{CONTROL_PREFIX}/login": {"POST": self._ctl_login},
        }

    def _build_pattern_routes(self) -> PatternRoutes:
        return []

    @staticmethod
    def _ctl(request: Request, action: Callable[[dict[str, Any]], Any]) -> Answer:
        """Runs `action` on the JSON body; a body it cannot use is the caller's mistake, a 400."""
        try:
            return json_answer(200, action(request.json()))
        except (ValueError, KeyError, TypeError) as exc:
            return json_answer(400, {"message": f"bad control request: {exc!r}"})

    def _ctl_reset(self, request: Request) -> Answer:
        self.reset()
        return json_answer(200, {})

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

    def _ctl_delay_answer_next(self, request: Request) -> Answer:
        def act(data: dict[str, Any]) -> dict[str, Any]:
            self.delay_answer_next(str(data["kind"]), float(data.get("seconds", 3.0)), int(data.get("count", 1)))
            return {}
        return self._ctl(request, act)

    def _ctl_clear_faults(self, request: Request) -> Answer:
        self.clear_faults()
        return json_answer(200, {})

    def _ctl_stats(self, request: Request) -> Answer:
        return json_answer(200, self.stats())

    def _ctl_login(self, request: Request) -> Answer:
        def act(data: dict[str, Any]) -> dict[str, Any]:
            user = self.user(str(data["user_id"]))
            self.login(user)
            return {"user_id": user.id}
        return self._ctl(request, act)
