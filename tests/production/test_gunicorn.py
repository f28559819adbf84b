"""The production run the README documents, for real: gunicorn serving
``backoffice.wsgi`` with ``DEBUG`` off on PostgreSQL, several workers, static
files collected and served by WhiteNoise, behind a TLS-terminating proxy
(``SECURE_PROXY_SSL_HEADER``).

The connect flow is run several times through three worker processes: the
authorize step and the callback land on whichever worker accepts the
connection, so the flows only succeed if OAuth state and sessions live in the
database. The access log records each request's worker pid, and the test
checks that at least one flow was started and finished by different workers.
"""

import os
import re
import subprocess
import sys
import time
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection

from connectors.models import ConnectedAccount
from tests.helpers import assert_strict_policies, gunicorn_serving

ROOT = Path(__file__).resolve().parents[2]
HOST = "backoffice.example.com"
PUBLIC = f"https://{HOST}"
PROXY = {"Host": HOST, "X-Forwarded-Proto": "https"}
FLOWS = 6

pytestmark = pytest.mark.skipif(
    not settings.DATABASES["default"]["ENGINE"].endswith("postgresql"),
    reason="runs in CI's PostgreSQL pass",
)


def production_env(standin, static_root):
    """Only what a deployment sets: nothing of the test settings' relaxations."""
    db = connection.settings_dict
    env = {key: os.environ[key] for key in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR") if key in os.environ}
    env.update(
        DJANGO_SETTINGS_MODULE="backoffice.settings",
        PYTHONPATH=str(ROOT),
        DEBUG="false",
        SECRET_KEY="production-run-secret-key-" + "x" * 40,
        FIELD_ENCRYPTION_KEY=os.environ["FIELD_ENCRYPTION_KEY"],
        ENV_FILE="",
        DATABASE_URL=f"postgres://{db.get('USER') or 'postgres'}@{db.get('HOST') or '127.0.0.1'}:"
        f"{db.get('PORT') or 5432}/{db['NAME']}",
        PUBLIC_BASE_URL=PUBLIC,
        ALLOWED_HOSTS=f"{HOST},127.0.0.1",
        SECURE_PROXY_SSL_HEADER="HTTP_X_FORWARDED_PROTO,https",
        DISCORD_API_BASE_URL=standin.api_base_url,
        DISCORD_AUTHORIZE_URL=standin.authorize_url,
        OAUTHLIB_INSECURE_TRANSPORT="1",
        STATIC_ROOT=str(static_root),
    )
    if db.get("PASSWORD"):
        env["PGPASSWORD"] = db["PASSWORD"]
    return env


class Browser:
    """A browser behind the proxy: every request carries the proxy's headers, and
    the cookies (Secure, so a cookie jar would not send them over the loopback's
    plain HTTP) are kept here by hand."""

    def __init__(self, base):
        self.base = base
        self.cookies = {}
        self.http = requests.Session()

    def _remember(self, response):
        for header in response.raw.headers.getlist("Set-Cookie"):
            for name, morsel in SimpleCookie(header).items():
                if morsel.get("max-age") == "0" or not morsel.value:
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value

    def request(self, method, path, headers=None, **kwargs):
        all_headers = {**PROXY, **(headers or {})}
        if self.cookies:
            all_headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        response = self.http.request(
            method, self.base + path, headers=all_headers, allow_redirects=False, timeout=15, **kwargs
        )
        self._remember(response)
        return response

    def get(self, path, **kwargs):
        return self.request("GET", path, **kwargs)

    def post(self, path, **kwargs):
        return self.request("POST", path, **kwargs)


@pytest.fixture
def gunicorn(transactional_db, standin, tmp_path):
    static_root = tmp_path / "static"
    env = production_env(standin, static_root)
    collected = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert collected.returncode == 0, collected.stderr
    assert (static_root / "staticfiles.json").is_file()

    access_log = tmp_path / "access.log"
    server_log = tmp_path / "gunicorn.log"
    with gunicorn_serving(
        env, workers=3, log_path=server_log, ready_path="/accounts/login/", ready_headers=PROXY,
        extra_args=["--access-logfile", str(access_log), "--access-logformat", "%(p)s %(m)s %(U)s %(s)s"],
    ) as base:
        yield base, access_log, server_log


def test_static_files_are_served_by_whitenoise_with_hashed_names(gunicorn):
    base, _, _ = gunicorn
    page = Browser(base).get("/admin/login/")
    assert page.status_code == 200
    hrefs = re.findall(r'<link[^>]+href="([^"]+\.css)"', page.text)
    base_css = [href for href in hrefs if "/static/admin/css/base." in href]
    assert base_css, hrefs
    assert re.search(r"/static/admin/css/base\.[0-9a-f]{12}\.css$", base_css[0]), base_css
    css = requests.get(base + base_css[0], headers=PROXY, timeout=10)
    assert css.status_code == 200
    assert css.headers["Content-Type"].startswith("text/css")
    # WhiteNoise marks hashed names as cacheable for ever.
    assert "immutable" in css.headers.get("Cache-Control", "")
    # The unhashed name is served too (from the collected files).
    plain = requests.get(base + "/static/admin/css/base.css", headers=PROXY, timeout=10)
    assert plain.status_code == 200

    # Our own pages' CSS, a static file for the Content-Security-Policy's sake.
    ours = Browser(base).get("/accounts/login/")
    site_css = re.search(r'href="(/static/connectors/site\.[0-9a-f]{12}\.css)"', ours.text)
    assert site_css, ours.text
    assert requests.get(base + site_css.group(1), headers=PROXY, timeout=10).status_code == 200


def test_security_headers_and_https_redirect(gunicorn, standin):
    base, _, _ = gunicorn
    page = Browser(base).get("/accounts/login/")
    assert page.status_code == 200
    assert page.headers["Strict-Transport-Security"].startswith("max-age=31536000")
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["Referrer-Policy"] == "same-origin"
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    csp = assert_strict_policies(page)
    # Every connector's consent page: Discord's (here the stand-in) and Slack's, at Slack in production.
    discord = urlsplit(standin.authorize_url)._replace(path="").geturl()
    assert csp["form-action"] == ["'self'", discord, "https://slack.com"]

    plain = requests.get(
        base + "/accounts/login/", headers={"Host": HOST}, allow_redirects=False, timeout=10
    )
    assert plain.status_code == 301
    assert plain.headers["Location"] == f"{PUBLIC}/accounts/login/"


def test_the_404_page_is_the_projects_own(gunicorn):
    base, _, _ = gunicorn
    page = Browser(base).get("/no/such/page/")
    assert page.status_code == 404
    assert "Page not found" in page.text
    for internal in ("Django", "Traceback", "DEBUG", "urlpatterns", "settings"):
        assert internal not in page.text


def log_in(browser, username, password):
    page = browser.get("/accounts/login/")
    assert page.status_code == 200
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    assert "csrftoken" in browser.cookies
    answer = browser.post(
        "/accounts/login/",
        data={"csrfmiddlewaretoken": token, "username": username, "password": password, "next": ""},
        headers={"Referer": f"{PUBLIC}/accounts/login/"},
    )
    assert answer.status_code == 302, answer.text
    assert "sessionid" in browser.cookies


def test_connect_flows_work_across_workers(gunicorn, standin):
    base, access_log, server_log = gunicorn
    user = get_user_model().objects.create_user("olga", password="pw-olga-12345")
    browser = Browser(base)
    log_in(browser, "olga", "pw-olga-12345")

    for _ in range(FLOWS):
        started = browser.get("/auth/discord/connect")
        assert started.status_code == 302, started.text
        authorize = started.headers["Location"]
        parts = urlsplit(authorize)
        assert f"{parts.scheme}://{parts.netloc}{parts.path}" == standin.authorize_url
        query = {key: values[0] for key, values in parse_qs(parts.query).items()}
        assert query["redirect_uri"] == f"{PUBLIC}/auth/discord/callback"
        approved = requests.get(
            standin.base_url + "/oauth2/authorize/_approve",
            params={**query, "action": "authorize"},
            allow_redirects=False,
            timeout=5,
        )
        assert approved.status_code == 302, approved.text
        callback = urlsplit(approved.headers["Location"])
        assert f"{callback.scheme}://{callback.netloc}{callback.path}" == f"{PUBLIC}/auth/discord/callback"
        finished = browser.get(f"{callback.path}?{callback.query}")
        assert finished.status_code == 302, finished.text
        assert finished.headers["Location"] == "/accounts/"

    assert standin.count("token.authorization_code") == FLOWS
    account = ConnectedAccount.objects.get(user=user)
    assert account.status == ConnectedAccount.Status.ACTIVE
    assert standin.access_token_valid(account.access_token)
    accounts = browser.get("/accounts/")
    assert accounts.status_code == 200
    assert standin.logged_in.global_name in accounts.text

    # Which worker served which step: at least one flow crossed workers.
    deadline = time.monotonic() + 5
    while True:
        lines = [line.split() for line in access_log.read_text().splitlines() if line.strip()]
        starts = [pid for pid, method, path, status in lines if path == "/auth/discord/connect"]
        finishes = [pid for pid, method, path, status in lines if path == "/auth/discord/callback"]
        if len(starts) == len(finishes) == FLOWS or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert len(starts) == len(finishes) == FLOWS, access_log.read_text()
    crossed = sum(1 for a, b in zip(starts, finishes) if a != b)
    assert crossed, f"every flow stayed on one worker: {list(zip(starts, finishes))}"
    assert "Traceback" not in server_log.read_text()
