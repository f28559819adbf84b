"""Paths with control characters answer 404, never 500, for every method, with or without a key;
runserver's log names a request's path without its query string (a callback's code and state)."""

import http.client
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from connectors.management.commands.runserver import Command as RunserverCommand
from connectors.management.commands.runserver import RequestHandler, Server
from standin.management.commands.runserver import Command as StandinRunserverCommand

REPO = Path(__file__).resolve().parents[2]
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
CONTROLS = ("%0d%0a", "%0a", "%0d", "%00", "%1b", "%7f")
PATHS = (
    "/api/v1/health{c}",
    "/api/v1/accounts{c}",
    "/api/v1/accounts/1/token{c}",
    "/api/v1/schema{c}",
    "/api/{c}",
    "/api/v1/{c}health",
    "/api{c}",
    "/{c}",
    "/accounts/{c}",
    "/accounts/login/{c}",
    "/accounts/1/servers/{c}/test-message",
    "/admin/{c}",
    "/admin/connectors/connectorconfig/{c}/change/",
    "/auth/discord/callback{c}",
    "/auth/{c}/connect",
    "/webhooks/discord/events{c}",
    "/static/connectors/site.css{c}",
)


def errors(caplog):
    """Every record at ERROR or above, or with a traceback: a 500 logs django.request at ERROR."""
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


def assert_not_found(answer, path, method):
    status = answer.status_code
    assert status == 404, f"{method} {path}: {status}"
    if urlsplit(path).path.startswith("/api/") and method != "HEAD":
        assert answer.json() == {"code": "not_found", "message": "No such endpoint."}, f"{method} {path}"


@pytest.mark.parametrize("control", CONTROLS)
@pytest.mark.parametrize("template", PATHS)
def test_a_path_with_a_control_character_is_404_for_every_method_with_or_without_a_key(
    client, api, template, control, caplog
):
    path = template.format(c=control)
    with caplog.at_level(logging.WARNING):
        for caller in (client, api):
            for method in METHODS:
                assert_not_found(caller.generic(method, path), path, method)
    assert not errors(caplog)


def test_a_signed_in_person_and_staff_get_404_too(client_alice, admin_client, caplog):
    with caplog.at_level(logging.WARNING):
        for caller in (client_alice, admin_client):
            for path in ("/accounts/%0a", "/accounts/1/servers/%0d/test-message", "/admin/%00", "/api/v1/health%0d%0a"):
                for method in METHODS:
                    assert_not_found(caller.generic(method, path), path, method)
    assert not errors(caplog)


def test_with_debug_on_too(client, api, settings, caplog):
    """Django's debug 404 page lists the routes; it answers these paths without failing."""
    settings.DEBUG = True
    with caplog.at_level(logging.WARNING):
        for caller in (client, api):
            for path in ("/api/v1/health%0d%0a", "/%00", "/accounts/%0a", "/admin/%0d"):
                for method in ("GET", "POST"):
                    assert_not_found(caller.generic(method, path), path, method)
    assert not errors(caplog)


def test_the_query_string_plays_no_part(client, caplog):
    with caplog.at_level(logging.WARNING):
        answer = client.get("/api/v1/health%0d%0a?user=alice%00")
        assert_not_found(answer, "/api/v1/health", "GET")
    assert not errors(caplog)


def test_paths_without_control_characters_still_reach_their_views(client, api):
    """The guard takes only what holds a control character: the API, its catch-all and the site answer as before."""
    assert api.get("/api/v1/health").status_code == 200
    assert client.get("/api/v1/health").status_code == 401
    assert api.get("/api/v1/nowhere").json()["code"] == "not_found"
    assert client.get("/accounts/").status_code == 302
    assert client.get("/accounts/login/").status_code == 200
    assert client.get("/api/v1/health%20").status_code == 404


def _raw(live_server, method, path, headers=None):
    parts = urlsplit(live_server.url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        connection.request(method, path, headers=headers or {})
        answer = connection.getresponse()
        return answer.status, answer.getheader("Content-Type", ""), answer.read()
    finally:
        connection.close()


def test_through_the_real_server_a_crlf_in_the_path_is_404_not_500(live_server, service_key, caplog):
    """Raw http.client: %0d%0a goes over the wire as written, and the server decodes it into the path."""
    key = {"Authorization": f"Bearer {service_key[1]}"}
    with caplog.at_level(logging.WARNING):
        for headers in (None, key):
            for method in ("GET", "POST", "PUT", "DELETE", "OPTIONS"):
                status, kind, body = _raw(live_server, method, "/api/v1/health%0d%0a", headers)
                assert (status, kind) == (404, "application/json"), (method, headers, status, body[:200])
                assert b'"not_found"' in body
            status, kind, _ = _raw(live_server, "POST", "/accounts/%0d%0a", headers)
            assert status == 404 and kind.startswith("text/html")
            status, _, _ = _raw(live_server, "GET", "/%00", headers)
            assert status == 404
        # The same path without the control characters is the API's, as before.
        assert _raw(live_server, "GET", "/api/v1/health", key)[0] == 200
    assert not errors(caplog)


# runserver's log: the path, never the query string (the callback's code and state).


def test_both_runserver_commands_serve_with_the_request_handler_that_drops_the_query():
    assert RunserverCommand.server_cls is Server
    assert StandinRunserverCommand.server_cls is Server
    assert issubclass(StandinRunserverCommand, RunserverCommand)


class _Recorder(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def test_the_handler_logs_a_request_line_without_its_query():
    """RequestHandler's log_message, as log_request and send_error call it, with Django's own logger."""
    handler = RequestHandler.__new__(RequestHandler)
    handler.request = None
    handler.requestline = "GET /auth/discord/callback?code=SECRETCODE&state=SECRETSTATE HTTP/1.1"
    handler.request_version = "HTTP/1.1"
    recorder = _Recorder()
    logger = logging.getLogger("django.server")
    logger.addHandler(recorder)
    try:
        handler.log_request(302, 0)
        handler.log_error("code %d, message %s", 400, "Bad request syntax ('GET /x?code=SECRETCODE&state=SECRETSTATE')")
    finally:
        logger.removeHandler(recorder)
    assert recorder.lines[0] == '"GET /auth/discord/callback HTTP/1.1" 302 0'
    assert "Bad request syntax ('GET /x" in recorder.lines[1]
    assert not any("SECRET" in line for line in recorder.lines)


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def runserver_process():
    """`manage.py runserver --noreload` in a child process on a free port; yields (base URL, process).

    It serves the test settings on an in-memory SQLite database of its own:
    the requests below need none.
    """
    port = _free_port()
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "DATABASE_URL": "sqlite:///:memory:",
           "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload", "--skip-checks"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, process.communicate()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "runserver did not listen within 30 s"
                time.sleep(0.1)
        yield port, process
    finally:
        if process.poll() is None:
            process.terminate()
        try:
            process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate(timeout=5)


def _send(port, method, path, headers=None, body=None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            connection.putheader(name, value)
        connection.endheaders(body)
        answer = connection.getresponse()
        answer.read()
        return answer.status
    finally:
        connection.close()


def test_runserver_logs_the_callbacks_path_without_the_code_or_the_state(runserver_process):
    port, process = runserver_process
    assert _send(port, "GET", "/auth/discord/callback?code=SECRETCODE&state=SECRETSTATE") == 302
    assert _send(port, "GET", "/nowhere?code=SECRETCODE&state=SECRETSTATE") == 404
    # A malformed request line: the server quotes it in its error line.
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /auth/discord/callback?code=SECRETCODE&state=SECRETSTATE HTTP/1.1 junk\r\n\r\n")
        assert b"Error code: 400" in sock.recv(4096)
    # Control characters in the path, and a Content-Length Django would read with int():
    # through the development server too, 404 and 400, never 500.
    assert _send(port, "GET", "/api/v1/health%0d%0a") == 404
    assert _send(port, "POST", "/accounts/%0a") == 404
    form = {"Content-Type": "application/x-www-form-urlencoded", "Cookie": "csrftoken=" + "a" * 32}
    for length in ("²", "¹²³", "1" * 4301, "-1", "0x10"):
        assert _send(port, "POST", "/accounts/login/", {**form, "Content-Length": length}) == 400, length
    process.terminate()
    out, err = process.communicate(timeout=15)
    logged = out + err
    assert '"GET /auth/discord/callback HTTP/1.1" 302' in logged
    assert '"GET /nowhere HTTP/1.1" 404' in logged
    assert '"GET /auth/discord/callback HTTP/1.1 junk" 400' in logged
    assert "SECRETCODE" not in logged and "SECRETSTATE" not in logged
    assert "code=" not in logged and "state=" not in logged
    assert "Traceback" not in logged and '" 500 ' not in logged
