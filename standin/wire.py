"""HTTP as every stand-in speaks it: the request a handler reads, the answer it returns, and the server.

The server is the standard library's threaded one, made to end idle keep-alive
connections when it stops, so that a test's client sees the stand-in go away.
"""

from __future__ import annotations

import base64
import binascii
import json
import socket
import sys
import threading
import traceback
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit


@dataclass
class Answer:
    """What a handler wants sent; the request handler does the wire work."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    send_after: float = 0.0


def json_answer(status: int, payload: Any, headers: dict[str, str] | None = None) -> Answer:
    body = json.dumps(payload).encode()
    return Answer(status, body, "application/json", dict(headers or {}))


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

    def basic(self) -> tuple[str, str] | None:
        """The (client id, secret) of HTTP Basic credentials, or None when there are none or they cannot be read."""
        value = self.auth("Basic")
        if value is None:
            return None
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        client_id, sep, secret = decoded.partition(":")
        return (client_id, secret) if sep else None


class Server(ThreadingHTTPServer):
    """Tracks open connections so stop() also ends idle keep-alive ones."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], standin: Any) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.standin = standin
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, _Handler)

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
    timeout = 60
    disable_nagle_algorithm = True
    server: Server

    def version_string(self) -> str:
        return self.server.standin.server_version

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
        standin = self.server.standin
        try:
            answer = standin.handle(request)
        except Exception:
            traceback.print_exc()
            answer = standin.error_answer(500)
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
