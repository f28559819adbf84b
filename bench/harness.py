"""What every benchmark under bench/ sets up the same way.

A benchmark runs against the Discord stand-in in its own process (so that
its work shares neither our CPU time nor our GIL), on a temporary SQLite
file unless DATABASE_URL names another database, with Django configured
from the test settings.
"""

import http.client
import os
import re
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
SERVICE_ID = "appmixer:discord"


def command_line():
    """How this benchmark was run, as the results and the README quote it."""
    return "python " + " ".join([os.path.relpath(sys.argv[0], REPO), *sys.argv[1:]])


@contextmanager
def standin(rate=None):
    """The stand-in's base URL while it runs; ``rate`` limits it to so many requests a second."""
    command = [sys.executable, "-m", "standin.discord", "--port", "0"]
    if rate:
        command += ["--rate-limit", str(rate)]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([process.stdout], [], [], 30)
        line = process.stdout.readline() if ready else ""
        match = re.search(r"on (http://\S+)", line)
        if match is None:
            sys.exit(f"the stand-in did not start: {line!r}")
        yield match.group(1)
    finally:
        process.terminate()
        process.wait(10)


@contextmanager
def database(prefix):
    """DATABASE_URL if set, else a temporary SQLite file removed afterwards."""
    if os.environ.get("DATABASE_URL"):
        yield os.environ["DATABASE_URL"]
        return
    folder = tempfile.mkdtemp(prefix=prefix)
    try:
        yield f"sqlite:///{folder}/bench.sqlite3"
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def setup_django(base_url, database_url, settings_module="tests.settings", **settings_env):
    """Django on the test settings (or ``settings_module``), pointed at the stand-in, migrated."""
    sys.path.insert(0, str(REPO))
    os.environ["DJANGO_SETTINGS_MODULE"] = settings_module
    os.environ["DATABASE_URL"] = database_url
    os.environ["DISCORD_API_BASE_URL"] = f"{base_url}/api/v10"
    os.environ["DISCORD_AUTHORIZE_URL"] = f"{base_url}/oauth2/authorize"
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ.update(settings_env)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


@contextmanager
def gunicorn(env, *, workers, log, ready_path="/api/v1/schema"):
    """gunicorn serving the app with ``workers`` sync workers on a free loopback port; yields the port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "backoffice.wsgi", "--workers", str(workers),
         "--bind", f"127.0.0.1:{port}"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                sys.exit(f"gunicorn did not start:\n{log.read()}")
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                connection.request("GET", ready_path)
                connection.getresponse().read()
                connection.close()
                break
            except OSError:
                time.sleep(0.2)
        yield port
    finally:
        process.terminate()
        process.wait(15)


class DecryptCount:
    """Counts encrypted_model_fields' decrypt_str calls (connectors.fields calls it by module)."""

    def __init__(self):
        from encrypted_model_fields import fields as upstream

        self.count = 0
        original = self.original = upstream.decrypt_str

        def counting(*args, **kwargs):
            self.count += 1
            return original(*args, **kwargs)

        upstream.decrypt_str = counting


def browser_of(user):
    """A requests session carrying a logged-in session cookie for ``user``, as a browser would."""
    import requests
    from django.conf import settings
    from django.test import Client

    client = Client()
    client.force_login(user)
    browser = requests.Session()
    browser.cookies.set(settings.SESSION_COOKIE_NAME, client.cookies[settings.SESSION_COOKIE_NAME].value)
    return browser


def consent(control, base_url, authorize_url):
    """The stand-in's consent clicked for ``authorize_url`` (through ``control``): the callback's path and query."""
    from urllib.parse import parse_qs, urlsplit

    query = {k: v[0] for k, v in parse_qs(urlsplit(authorize_url).query).items()}
    answer = control.get(f"{base_url}/oauth2/authorize/_approve", params={**query, "action": "authorize"},
                         allow_redirects=False, timeout=10)
    assert answer.status_code == 302, answer.text[:300]
    parts = urlsplit(answer.headers["Location"])
    return f"{parts.path}?{parts.query}"


def run_together(threads):
    """Start ``threads`` at once and wait for them all; the seconds that took."""
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started
