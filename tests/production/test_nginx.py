"""The production recipe with nginx in front (deploy/): slow clients cannot stall the site,
and no log line holds an OAuth code or state.

deploy/nginx.conf is rendered with its placeholders into a temporary
directory and run by Debian's nginx (``-p <tmp> -c <conf>``, pid, logs and
temporary files all there) on a free loopback port, in front of gunicorn with
two sync workers, ``DEBUG`` off, and the access-log format of
deploy/backoffice.service. The test plays the balancer that ends TLS before
nginx: it sends ``X-Forwarded-Proto: https``. gunicorn's database is an SQLite
file of its own (``migrate`` makes it), so the test runs in either pass.

Issue #27: two connections sending their headers slowly held both workers of
the README's recipe, and a normal request waited 11 s.
"""

import os
import re
import select
import shlex
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.helpers import REPO, gunicorn_serving

NGINX = Path("/usr/sbin/nginx")
HOST = "backoffice.example.com"
BALANCER = {"Host": HOST, "X-Forwarded-Proto": "https"}
SLOW_CLIENTS = 8
# Longer than any header nginx waits for (client_header_timeout 10s).
SLOW_FOR = 12.5

pytestmark = pytest.mark.skipif(
    not NGINX.is_file(), reason="needs Debian's nginx (/usr/sbin/nginx: apt-get install nginx; .ci/run installs it)"
)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def unit_gunicorn_args(access_log):
    """gunicorn's options from deploy/backoffice.service's ExecStart, as systemd hands them over
    (``%%`` read as ``%``), but for the address (gunicorn_serving picks one) and the access log's
    file (the journal there, ``access_log`` here)."""
    unit = (REPO / "deploy" / "backoffice.service").read_text()
    lines = unit.replace("\\\n", " ").splitlines()
    exec_start = next(line for line in lines if line.startswith("ExecStart="))
    argv = shlex.split(exec_start.removeprefix("ExecStart=").replace("%%", "%"))
    assert Path(argv[0]).name == "gunicorn" and argv[1] == "backoffice.wsgi", argv
    options = argv[2:]
    bind = options.index("--bind")
    del options[bind:bind + 2]
    options[options.index("--access-logfile") + 1] = str(access_log)
    log_format = options[options.index("--access-logformat") + 1]
    assert "%(U)s" in log_format and "%(r)s" not in log_format and "%(f)s" not in log_format, log_format
    return options


def render_site(**values):
    """deploy/nginx.conf with every @PLACEHOLDER@ filled in."""
    text = (REPO / "deploy" / "nginx.conf").read_text()
    for name, value in values.items():
        text = text.replace(f"@{name}@", str(value))
    left = set(re.findall(r"@[A-Z_]+@", text))
    assert not left, f"placeholders not filled: {left}"
    return text


def nginx_main_conf(tmp, site):
    """What Debian's /etc/nginx/nginx.conf gives the site, with every path in ``tmp``."""
    # As root, nginx's workers would run as nobody, which cannot read pytest's 0700 directories.
    user = "user root;\n" if os.geteuid() == 0 else ""
    return f"""{user}daemon off;
master_process on;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-main.error.log info;
events {{ worker_connections 256; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    sendfile on;
    client_body_temp_path {tmp}/nginx-body;
    proxy_temp_path {tmp}/nginx-proxy;
    fastcgi_temp_path {tmp}/nginx-fastcgi;
    uwsgi_temp_path {tmp}/nginx-uwsgi;
    scgi_temp_path {tmp}/nginx-scgi;
    access_log off;
    include {site};
}}
"""


def production_env(tmp):
    """The README's production settings behind nginx and a balancer, on an SQLite file."""
    env = {key: os.environ[key] for key in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR") if key in os.environ}
    env.update(
        DJANGO_SETTINGS_MODULE="backoffice.settings",
        PYTHONPATH=str(REPO),
        ENV_FILE="",
        DEBUG="false",
        SECRET_KEY="production-run-secret-key-" + "x" * 40,
        FIELD_ENCRYPTION_KEY=os.environ["FIELD_ENCRYPTION_KEY"],
        DATABASE_URL=f"sqlite:///{tmp}/db.sqlite3",
        PUBLIC_BASE_URL=f"https://{HOST}",
        ALLOWED_HOSTS=HOST,
        SECURE_PROXY_SSL_HEADER="HTTP_X_FORWARDED_PROTO,https",
        LOGIN_IP_HEADER="HTTP_X_FORWARDED_FOR",
        LOGIN_PROXY_COUNT="2",
        STATIC_ROOT=str(tmp / "static"),
        LOG_LEVEL="INFO",
    )
    return env


class Stack:
    def __init__(self, tmp, gunicorn, nginx):
        self.tmp, self.gunicorn, self.nginx = tmp, gunicorn, nginx
        self.nginx_access = tmp / "backoffice.access.log"
        self.gunicorn_access = tmp / "gunicorn.access.log"

    def logs(self):
        """Every log file of the run, by name (nginx's access and error logs, gunicorn's two)."""
        return {path.name: path.read_text(errors="replace") for path in sorted(self.tmp.glob("*.log"))}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("nginx")
    env = production_env(tmp)
    started = time.monotonic()
    prepared = [
        subprocess.Popen([sys.executable, "manage.py", *command, "--noinput"], cwd=REPO, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for command in (["migrate"], ["collectstatic"])
    ]
    for process in prepared:
        output, _ = process.communicate(timeout=180)
        assert process.returncode == 0, output
    print(f"\nmigrate and collectstatic: {time.monotonic() - started:.1f} s")

    with gunicorn_serving(
        env, workers=2, log_path=tmp / "gunicorn.log", ready_path="/accounts/login/", ready_headers=BALANCER,
        extra_args=unit_gunicorn_args(tmp / "gunicorn.access.log"),
    ) as gunicorn:
        port = free_port()
        site = tmp / "backoffice.conf"
        site.write_text(render_site(
            LISTEN=f"127.0.0.1:{port}", SERVER_NAME=HOST, UPSTREAM=gunicorn.removeprefix("http://"),
            STATIC_ROOT=tmp / "static", LOG_DIR=tmp,
        ))
        main = tmp / "nginx.conf"
        main.write_text(nginx_main_conf(tmp, site))
        command = [str(NGINX), "-p", str(tmp), "-c", str(main), "-e", str(tmp / "nginx-startup.error.log")]
        checked = subprocess.run([*command, "-t"], capture_output=True, text=True, timeout=30)
        assert checked.returncode == 0, checked.stderr
        with open(tmp / "nginx.out", "w") as out:
            nginx = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 10
            while True:
                assert nginx.poll() is None, (tmp / "nginx.out").read_text()
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    assert time.monotonic() < deadline, "nginx did not listen within 10 s"
                    time.sleep(0.05)
            yield Stack(tmp, gunicorn, f"http://127.0.0.1:{port}")
        finally:
            nginx.terminate()
            try:
                nginx.wait(timeout=10)
            except subprocess.TimeoutExpired:
                nginx.kill()
                nginx.wait(timeout=5)


class SlowClients:
    """``count`` connections that each send a request's header one byte a second, never finishing it.

    Runs in a thread for at most ``seconds``; ``closed_after`` holds, per
    connection, when the server closed it (None: still open at the end).
    """

    HEADER = (f"GET /accounts/login/ HTTP/1.1\r\nHost: {HOST}\r\nX-Forwarded-Proto: https\r\n"
              "X-Slow: " + "s" * 200).encode()

    def __init__(self, base, count, seconds):
        host, port = base.removeprefix("http://").split(":")
        self.sockets = [socket.create_connection((host, int(port)), timeout=2) for _ in range(count)]
        self.seconds = seconds
        self.closed_after = [None] * count
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self.started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=5)
        for sock in self.sockets:
            sock.close()

    def wait(self):
        self._thread.join(timeout=self.seconds + 5)

    def _closed(self, index):
        if self.closed_after[index] is None:
            self.closed_after[index] = time.monotonic() - self.started

    def _run(self):
        for byte in self.HEADER:
            for index, sock in enumerate(self.sockets):
                if self.closed_after[index] is not None:
                    continue
                readable, _, _ = select.select([sock], [], [], 0)
                try:
                    if readable and not sock.recv(4096):
                        self._closed(index)
                        continue
                    sock.sendall(bytes([byte]))
                except OSError:
                    self._closed(index)
            self.sent += 1
            if all(self.closed_after) or self._stop.wait(1.0) or time.monotonic() - self.started > self.seconds:
                return


def timed_get(url, timeout=5):
    started = time.monotonic()
    response = requests.get(url, headers=BALANCER, timeout=timeout)
    return response, time.monotonic() - started


def test_slow_clients_hold_no_worker_behind_nginx(stack):
    """Eight connections sending headers a byte a second: a normal request still answers within 1 s,
    and nginx closes the slow ones once client_header_timeout (10 s) has passed."""
    with SlowClients(stack.nginx, SLOW_CLIENTS, seconds=SLOW_FOR) as slow:
        time.sleep(2.0)  # every slow connection is open and has sent some bytes
        timings = []
        for _ in range(4):
            response, elapsed = timed_get(stack.nginx + "/accounts/login/")
            assert response.status_code == 200, response.text[:300]
            assert "Log in" in response.text or "login" in response.text.lower()
            timings.append(elapsed)
            time.sleep(1.5)
        slow.wait()
    print(f"\nthrough nginx, with {SLOW_CLIENTS} slow clients: " + ", ".join(f"{t * 1000:.0f} ms" for t in timings))
    print("slow clients closed by nginx after: " + ", ".join(f"{t:.1f} s" for t in slow.closed_after if t))
    assert max(timings) < 1.0, timings
    # The header timeout: every slow connection closed by nginx after 10 s, none before.
    assert all(c is not None and 9.5 <= c <= SLOW_FOR for c in slow.closed_after), slow.closed_after
    # gunicorn never saw them: only whole requests reach it.
    assert stack.gunicorn_access.read_text().count("/accounts/login/") >= len(timings)


def test_static_files_come_from_nginx_with_hashed_names_cached_for_ever(stack):
    page = requests.get(stack.nginx + "/accounts/login/", headers=BALANCER, timeout=5)
    href = re.search(r'href="(/static/connectors/site\.[0-9a-f]{12}\.css)"', page.text).group(1)
    before = stack.gunicorn_access.read_text().count("/static/")

    css = requests.get(stack.nginx + href, headers={**BALANCER, "Accept-Encoding": "gzip"}, timeout=5)
    assert css.status_code == 200
    assert css.headers["Content-Type"].startswith("text/css")
    assert css.headers["Cache-Control"] == "public, max-age=315360000, immutable"
    assert css.headers["X-Content-Type-Options"] == "nosniff"
    assert css.headers.get("Content-Encoding") == "gzip"  # collectstatic's .gz, gzip_static
    assert css.headers["Server"] == "nginx"  # server_tokens off: no version
    plain = requests.get(stack.nginx + "/static/connectors/site.css", headers=BALANCER, timeout=5)
    assert plain.status_code == 200 and plain.headers["Cache-Control"] == "public, max-age=60"
    assert requests.get(stack.nginx + "/static/no/such.css", headers=BALANCER, timeout=5).status_code == 404
    time.sleep(0.2)
    assert stack.gunicorn_access.read_text().count("/static/") == before, "gunicorn served a static file"


def test_the_forwarded_headers_reach_django(stack):
    """X-Forwarded-Proto: the balancer's https is passed on (no redirect), plain http is redirected;
    X-Forwarded-For: nginx appends the address it saw."""
    secure = requests.get(stack.nginx + "/accounts/login/", allow_redirects=False, timeout=5,
                          headers={**BALANCER, "X-Forwarded-For": "198.51.100.23"})
    assert secure.status_code == 200
    plain = requests.get(stack.nginx + "/accounts/login/", headers={"Host": HOST}, allow_redirects=False, timeout=5)
    assert plain.status_code == 301 and plain.headers["Location"] == f"https://{HOST}/accounts/login/"
    time.sleep(0.2)
    assert "198.51.100.23, 127.0.0.1 " in stack.gunicorn_access.read_text()


def test_a_body_over_two_megabytes_is_refused_by_nginx(stack):
    before = stack.gunicorn_access.read_text().count("POST")
    big = requests.post(stack.nginx + "/accounts/login/", data=b"x" * (2 * 1024 * 1024 + 1), headers=BALANCER,
                        timeout=10)
    assert big.status_code == 413
    time.sleep(0.2)
    assert stack.gunicorn_access.read_text().count("POST") == before


def test_no_log_line_holds_an_oauth_code_or_state(stack):
    """A callback's code and state, in its URL, in the login redirect's next= and in a Referer,
    reach neither nginx's logs nor gunicorn's."""
    secrets = ("SECRETCODE", "SECRETSTATE")
    callback = "/auth/discord/callback?code=SECRETCODE&state=SECRETSTATE"
    referer = f"https://{HOST}{callback}"
    answer = requests.get(stack.nginx + callback, headers={**BALANCER, "Referer": referer},
                          allow_redirects=False, timeout=5)
    # Not signed in: sent to the login page, the callback in its next=.
    assert answer.status_code == 302
    login = answer.headers["Location"]
    assert login.startswith("/accounts/login/?next=") and "SECRETCODE" in login
    assert requests.get(stack.nginx + login, headers={**BALANCER, "Referer": referer}, timeout=5).status_code == 200
    # A refused request nginx logs as an error (413), the secrets in its query string.
    requests.post(stack.nginx + callback, data=b"x" * (3 * 1024 * 1024), headers={**BALANCER, "Referer": referer},
                  timeout=10)
    time.sleep(0.3)

    logs = stack.logs()
    assert "/auth/discord/callback" in logs["backoffice.access.log"]
    assert "/auth/discord/callback" in logs["gunicorn.access.log"]
    assert '"GET /accounts/login/ HTTP/1.1" 200' in logs["backoffice.access.log"]
    for name, text in logs.items():
        for secret in secrets:
            assert secret not in text, f"{secret} in {name}:\n{text}"
    # The Referer is logged, without its query.
    assert f'"{referer.split("?")[0]}"' in logs["backoffice.access.log"]


def test_without_nginx_two_slow_clients_stall_gunicorn(stack):
    """The issue's finding, the reason for nginx: straight at gunicorn's two sync workers, two slow
    clients hold both and a normal request gets no answer within 1 s. Last: it ties the workers up."""
    with SlowClients(stack.gunicorn, 2, seconds=4) as slow:
        time.sleep(1.0)
        started = time.monotonic()
        with pytest.raises(requests.Timeout):
            requests.get(stack.gunicorn + "/accounts/login/", headers=BALANCER, timeout=1.5)
        print(f"\nstraight at gunicorn, with 2 slow clients: no answer within {time.monotonic() - started:.1f} s")
        slow.wait()
    # Once they are gone, the workers serve again.
    response, _ = timed_get(stack.gunicorn + "/accounts/login/", timeout=10)
    assert response.status_code == 200
