"""Small functions several test modules share."""

import os
import runpy
import select
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from html.parser import HTMLParser
from io import StringIO
from pathlib import Path
from smtplib import SMTPException
from typing import Callable
from unittest import mock
from urllib.parse import parse_qs, quote, urlsplit

import pytest
import requests
from django import forms
from django.contrib.auth.models import Permission
from django.core.mail.backends.base import BaseEmailBackend
from django.core import mail
from django.core.management import CommandError, call_command
from django.db import connection
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from connectors.base import ConfigField, Connector
from connectors.config import config_update
from connectors.exceptions import CredentialsRefused, NeedsReconnect
from connectors.models import ConnectedAccount, ConnectorConfig, ConnectorValue
from connectors.tokens import fresh_access_token
from tests.conftest import BOT_TOKEN, CLIENT_ID, CLIENT_SECRET, SERVICE_ID


def raw_values():
    """The value column as the database holds it, read with SQL: what an attacker with a dump sees."""
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {quote('key')}, {quote('value')} FROM {quote(ConnectorValue._meta.db_table)}"
        )
        return dict(cursor.fetchall())


def connector_settings(settings, provider="discord", **values):
    """Override some of a connector's block in settings.CONNECTORS (a new block for a new provider),
    through pytest-django's ``settings``."""
    settings.CONNECTORS = {
        **settings.CONNECTORS,
        provider: {**settings.CONNECTORS.get(provider, {}), **values},
    }


ACCOUNT_ADMIN = "/admin/connectors/connectedaccount/"


def account_admin_action(staff, name, account):
    """Run an action of the admin's account list on ``account``; the page it ends on."""
    return staff.post(ACCOUNT_ADMIN, {"action": name, "_selected_action": [account.pk]}, follow=True).content.decode()


def config_admin_url(view):
    """An admin page of the stored Discord configuration: change, history, test_credentials."""
    config = ConnectorConfig.objects.get(service_id=SERVICE_ID)
    return reverse(f"admin:connectors_connectorconfig_{view}", args=[config.pk])


# The two policy headers every response carries (settings:
# CONTENT_SECURITY_POLICY; connectors.middleware).

DENIED_FEATURES = ("camera", "microphone", "geolocation", "payment", "usb")


def csp_directives(response):
    """The enforced Content-Security-Policy of a response, as {directive: [sources]}."""
    assert "Content-Security-Policy-Report-Only" not in response.headers, "the policy is only reported"
    header = response.headers.get("Content-Security-Policy")
    assert header, f"no Content-Security-Policy on {response.status_code} {response.headers}"
    directives = {}
    for part in header.split(";"):
        name, *sources = part.split()
        directives[name] = sources
    return directives


def assert_strict_policies(response):
    """The strict CSP (no inline script or style, nothing framed) and the Permissions-Policy."""
    csp = csp_directives(response)
    assert csp["default-src"] == ["'self'"]
    assert csp["script-src"] == ["'self'"], "script-src allows more than our own files"
    assert csp["style-src"] == ["'self'"], "style-src allows more than our own files"
    assert csp["object-src"] == ["'none'"]
    assert csp["base-uri"] == ["'self'"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert csp["form-action"][0] == "'self'"
    features = dict(item.strip().split("=", 1) for item in response.headers["Permissions-Policy"].split(","))
    assert {feature: features.get(feature) for feature in DENIED_FEATURES} == dict.fromkeys(DENIED_FEATURES, "()")
    return csp


REDIRECT_URI = "https://backoffice.example.com/auth/discord/callback"


# Driving the connect flow with Django's test client on this side and real
# HTTP to the local Discord stand-in on the other.


def start(client, next_url=None):
    response = client.get("/auth/discord/connect", {"next": next_url} if next_url else {})
    assert response.status_code == 302, response.content
    return response["Location"]


def decide(standin, authorize_url, action="authorize", **extra):
    """Press a button on a stand-in's consent page (Discord's or Slack's); return where it sends the browser."""
    query = {k: v[0] for k, v in parse_qs(urlsplit(authorize_url).query).items()}
    query.update(action=action, **extra)
    answer = requests.get(
        standin.authorize_url + "/_approve", params=query, allow_redirects=False, timeout=5
    )
    assert answer.status_code == 302, answer.text
    return answer.headers["Location"]


def standin_tokens(standin, scope="identify guilds bot", **extra):
    """Authorize at the Discord stand-in without a browser and exchange the code: its token answer.

    The stand-in must accept any redirect (no redirect_uris registered).
    """
    redirect = "http://app.test/auth/discord/callback"
    query = {"client_id": standin.app.client_id, "response_type": "code", "redirect_uri": redirect,
             "scope": scope, "action": "authorize", **extra}
    location = requests.get(standin.authorize_url + "/_approve", params=query, allow_redirects=False,
                            timeout=5).headers["Location"]
    code = parse_qs(urlsplit(location).query)["code"][0]
    answer = requests.post(standin.api_base_url + "/oauth2/token", timeout=5,
                           auth=(standin.app.client_id, standin.app.client_secret),
                           data={"grant_type": "authorization_code", "code": code, "redirect_uri": redirect})
    assert answer.status_code == 200, answer.text
    return answer.json()


class ConsentForm(HTMLParser):
    """What a browser would submit from a stand-in's consent page: its action, hidden fields, buttons, one select."""

    def __init__(self, select):
        super().__init__()
        self.select = select
        self.action = None
        self.fields = {}
        self.buttons = []
        self.options = []
        self.in_select = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.action = a.get("action")
        elif tag == "input" and a.get("type") == "hidden":
            self.fields[a["name"]] = a["value"]
        elif tag == "button":
            self.buttons.append((a["name"], a["value"]))
        elif tag == "select":
            self.in_select = a.get("name") == self.select
        elif tag == "option" and self.in_select:
            self.options.append((a["value"], "selected" in a))


def read_form(page, select=None):
    """The consent form of ``page``; ``options`` lists the (value, selected) of the select named ``select``."""
    reader = ConsentForm(select)
    reader.feed(page)
    return reader


def finish(client, callback_url):
    parts = urlsplit(callback_url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == REDIRECT_URI
    return client.get(f"{parts.path}?{parts.query}")


def connect(client, standin, **extra):
    return finish(client, decide(standin, start(client), **extra))


REPO = Path(__file__).resolve().parents[1]

postgres_only = pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="needs row locks across connections and processes; runs in CI's PostgreSQL pass "
    "(DATABASE_URL=postgres://...)",
)


def _seeded(standin, user, *, expires_in, scopes):
    """An unsaved account holding a new grant the stand-in knows, without the browser dance."""
    person = standin.add_user(username=f"seed_{standin.snowflake()}", global_name=None, email=None, guilds=[])
    grant = standin.create_grant(person, scopes=scopes, expires_in=expires_in)
    return ConnectedAccount(
        user=user,
        service_id=SERVICE_ID,
        uid=person.id,
        username=person.username,
        access_token=grant.access_token,
        refresh_token=grant.refresh_token,
        scopes=scopes,
        expires_at=timezone.now() + timedelta(seconds=expires_in),
    )


def seed_account(standin, user, *, expires_in, scopes="identify"):
    """A stored account holding a grant the stand-in knows."""
    account = _seeded(standin, user, expires_in=expires_in, scopes=scopes)
    account.save()
    return account


def seed_many(standin, user, count, *, expires_in=60, scopes="identify"):
    """``count`` such accounts, stored in one statement."""
    ConnectedAccount.objects.bulk_create(
        _seeded(standin, user, expires_in=expires_in, scopes=scopes) for _ in range(count)
    )


def child_env(standin):
    """The environment a child process needs to share this test's database and stand-in."""
    db = connection.settings_dict
    credentials = quote(db["USER"] or "") + (f":{quote(db['PASSWORD'])}" if db["PASSWORD"] else "")
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": f"postgres://{credentials}@{db['HOST'] or 'localhost'}:{db['PORT'] or 5432}/{db['NAME']}",
        "DISCORD_API_BASE_URL": standin.api_base_url,
        "DISCORD_AUTHORIZE_URL": standin.authorize_url,
        "LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(REPO),
    }


@contextmanager
def gunicorn_serving(env, *, workers, log_path, ready_path="/api/v1/schema", ready_headers=None, extra_args=()):
    """gunicorn serving ``backoffice.wsgi`` with ``workers`` processes on a free loopback port; yields its base URL.

    It is ready once ``ready_path`` answers (sent with ``ready_headers``);
    ``extra_args`` go to gunicorn's command line.
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "gunicorn"), "backoffice.wsgi",
             "--workers", str(workers), "--bind", f"127.0.0.1:{port}", *extra_args],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, Path(log_path).read_text()
            try:
                requests.get(base + ready_path, headers=ready_headers, timeout=5)
                break
            except (requests.ConnectionError, requests.Timeout):
                if time.monotonic() > deadline:
                    pytest.fail("gunicorn did not answer within 30 s:\n" + Path(log_path).read_text())
                time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def sweeps_side_by_side(standin, *arguments, count=2, env=None):
    """``count`` refresh_tokens runs started together, as several hosts' cron would.

    Returns (returncode, stdout, stderr) of each.
    """
    command = [sys.executable, "manage.py", "refresh_tokens", *arguments]
    runs = [
        subprocess.Popen(command, cwd=REPO, env={**child_env(standin), **(env or {})},
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(count)
    ]
    try:
        outputs = [process.communicate(timeout=180) for process in runs]
    finally:
        for process in runs:
            if process.poll() is None:
                process.kill()
    return [(process.returncode, out, err) for process, (out, err) in zip(runs, outputs)]


KEY = "u0w1mPrwPqFsoWcqZ3TL5Lr2b7MmFVpVb4C6jkd5DDg="

PRODUCTION = {
    "DEBUG": "false",
    "SECRET_KEY": "a-long-production-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
    "FIELD_ENCRYPTION_KEY": KEY,
    "PUBLIC_BASE_URL": "https://backoffice.example.com",
    "ALLOWED_HOSTS": "backoffice.example.com",
}


def refresh_tokens_run(*args):
    """refresh_tokens --within 1d in this process: its output, and its CommandError's message or None."""
    out = StringIO()
    try:
        call_command("refresh_tokens", "--within", "1d", *args, stdout=out)
    except CommandError as error:
        return out.getvalue(), str(error)
    return out.getvalue(), None


def manage(*args, **env):
    """Run manage.py with only the given environment, as a deploy script would."""
    base = {"PATH": os.environ["PATH"], "ENV_FILE": "", "DATABASE_URL": "sqlite:///:memory:"}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def runserver(command_class, address, *, while_serving=lambda: None):
    """`manage.py runserver --noreload` up to where it would serve; `while_serving` runs there."""
    command = command_class()
    out, err = StringIO(), StringIO()
    # runserver closes the connections before serving: the test's transaction needs its own.
    with mock.patch("django.core.management.commands.runserver.run", lambda *a, **k: while_serving()), \
            mock.patch("django.core.management.commands.runserver.connections", mock.Mock(all=lambda **kwargs: [])):
        call_command(command, address, "--noreload", "--skip-checks", stdout=out, stderr=err)
    return command, out.getvalue(), err.getvalue()


def read_line(process, *, timeout):
    """A line from a child's stdout, or a failure instead of a hang."""
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    assert ready, f"child {process.pid} said nothing within {timeout}s"
    line = process.stdout.readline()
    assert line, f"child {process.pid} exited early: {process.stderr.read()}"
    return line.strip()


class FakeClock:
    """``time.time`` and ``time.sleep`` for the pace: a sleep passes at once and is recorded."""

    def __init__(self, start=1_800_000_000.0):
        self.now = start
        self.waits = []

    def time(self):
        return self.now

    def sleep(self, seconds):
        self.waits.append(seconds)
        self.now += seconds


# The connector configuration's admin pages

ADD = "/admin/connectors/connectorconfig/add/"
# Text the admin shows on purpose (labels, help texts, the client ID in clear)
# shares a few 5-character windows with the test secrets: "Client",
# "secret", "token", digits of the client ID. Any other window of a secret
# found in a page is a leak.
SHOWN_ON_PURPOSE = (CLIENT_ID, "Client secret", "Reset Secret", "Bot token", "value")


def windows(text, size=5):
    return {text[i : i + size] for i in range(len(text) - size + 1)}


def secret_windows(secret):
    return {w for w in windows(secret) if not any(w in text for text in SHOWN_ON_PURPOSE)}


def assert_no_secret(page):
    """Neither secret, nor any 5 characters of one, is in the page."""
    html = page.content.decode() if hasattr(page, "content") else page
    for secret in (CLIENT_SECRET, BOT_TOKEN):
        assert secret not in html
        leaked = sorted(w for w in secret_windows(secret) if w in html)
        assert not leaked, f"a page shows part of a secret: {leaked}"


def form_data(page, **changes):
    """What a browser posts for the page as rendered, with ``changes`` typed in.

    Password inputs come back empty, as the page renders them; a change of
    None leaves a field out (an unticked box).
    """
    form = page.context["adminform"].form
    data = {}
    for name, field in form.fields.items():
        value = form[name].value()
        if isinstance(field.widget, forms.PasswordInput):
            value = ""
        if value is None or value is False or value == []:
            continue
        data[name] = value
    data.update(changes)
    return {name: value for name, value in data.items() if value is not None}


def grant(user, *codenames):
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="connectors", codename__in=codenames)
    )


# The connector test kit. Every connector's tests subclass ConnectorConformance
# and give it a ``harness`` fixture: what the kit needs to know of the
# provider's stand-in. The kit then proves, through the real views, the token
# service and the commands, what every connector owes: the flow, the refresh,
# the revocation, the credentials check and the masking of secrets.


@dataclass
class ProviderHarness:
    """A connector and the hands the kit needs on its provider's stand-in."""

    connector: Connector
    # Credentials the stand-in accepts; the kit stores them.
    values: dict
    # The same with a secret the stand-in refuses.
    wrong_values: dict
    # The person consents (or cancels) on the authorize URL; returns where
    # the provider sends the browser back.
    approve: Callable[[str], str]
    cancel: Callable[[str], str]
    # Whether the provider still honours the account's grant.
    grant_alive: Callable[[ConnectedAccount], bool]
    # The person removes the app at the provider.
    remove_app: Callable[[ConnectedAccount], None]


class ConnectorConformance:
    """What every connector owes, whatever its provider; subclassed once per connector."""

    def connect(self, client, harness):
        connector = harness.connector
        start = client.get(reverse("oauth-connect", args=[connector.provider]))
        assert start.status_code == 302, start.content
        assert start["Location"].startswith(connector.authorize_url)
        return client.get(_local(harness.approve(start["Location"]), connector))

    @pytest.fixture
    def stored(self, harness):
        config_update(service_id=harness.connector.service_id, values=harness.values)
        return harness

    def test_connect_stores_one_account_with_its_tokens_encrypted(self, stored, client_alice):
        answer = self.connect(client_alice, stored)
        assert answer.status_code == 302 and answer["Location"] == reverse("accounts")
        account = ConnectedAccount.objects.get(service_id=stored.connector.service_id)
        assert account.status == ConnectedAccount.Status.ACTIVE and account.uid
        assert stored.grant_alive(account)
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT access_token FROM {ConnectedAccount._meta.db_table}")
            (raw,) = cursor.fetchone()
        assert account.access_token and account.access_token not in raw
        page = client_alice.get(reverse("accounts")).content.decode()
        assert account.uid in page and account.access_token not in page
        again = self.connect(client_alice, stored)
        assert again.status_code == 302
        assert ConnectedAccount.objects.filter(service_id=stored.connector.service_id).count() == 1

    def test_cancel_stores_nothing_and_says_so(self, stored, client_alice):
        connector = stored.connector
        start = client_alice.get(reverse("oauth-connect", args=[connector.provider]))
        page = client_alice.get(_local(stored.cancel(start["Location"]), connector))
        assert page.status_code == 200
        assert escape(connector.cancel_message) in page.content.decode()
        assert not ConnectedAccount.objects.exists()

    def test_a_callback_used_twice_is_refused(self, stored, client_alice):
        connector = stored.connector
        start = client_alice.get(reverse("oauth-connect", args=[connector.provider]))
        callback = _local(stored.approve(start["Location"]), connector)
        assert client_alice.get(callback).status_code == 302
        assert client_alice.get(callback).status_code == 400
        assert ConnectedAccount.objects.count() == 1

    def test_an_expiring_token_is_refreshed_and_the_new_one_stored(self, stored, client_alice):
        self.connect(client_alice, stored)
        account = ConnectedAccount.objects.get()
        old = account.access_token
        ConnectedAccount.objects.filter(pk=account.pk).update(expires_at=timezone.now())
        fresh = fresh_access_token(account)
        assert fresh != old
        stored_now = ConnectedAccount.objects.get(pk=account.pk)
        assert stored_now.access_token == fresh and stored_now.refreshed_at is not None
        assert stored.grant_alive(stored_now)

    def test_a_grant_removed_at_the_provider_asks_for_a_reconnect(self, stored, client_alice):
        self.connect(client_alice, stored)
        account = ConnectedAccount.objects.get()
        stored.remove_app(account)
        ConnectedAccount.objects.filter(pk=account.pk).update(expires_at=timezone.now())
        with pytest.raises(NeedsReconnect):
            fresh_access_token(account)
        account.refresh_from_db()
        assert account.status == ConnectedAccount.Status.NEEDS_RECONNECT
        assert account.status_reason == stored.connector.reconnect_reason
        page = client_alice.get(reverse("accounts")).content.decode()
        assert "Reconnect</a>" in page

    def test_refused_client_credentials_flag_the_connector_and_mark_no_account(self, stored, client_alice):
        connector = stored.connector
        self.connect(client_alice, stored)
        account = ConnectedAccount.objects.get()
        ConnectedAccount.objects.filter(pk=account.pk).update(expires_at=timezone.now())
        secrets_ = {key: value for key, value in stored.wrong_values.items() if key in connector.secret_keys}
        config_update(service_id=connector.service_id, values=secrets_)
        with pytest.raises(CredentialsRefused):
            fresh_access_token(account)
        account.refresh_from_db()
        assert account.status == ConnectedAccount.Status.ACTIVE and account.marked_by == ""
        assert stored.grant_alive(account) and not mail.outbox
        config = ConnectorConfig.objects.get(service_id=connector.service_id)
        assert config.credentials_refused_at is not None and "client credentials" in config.credentials_refused
        # The right secret again clears the flag, and the refresh goes through.
        config_update(service_id=connector.service_id, values=stored.values)
        assert ConnectorConfig.objects.get(service_id=connector.service_id).credentials_refused_at is None
        old = account.access_token
        assert fresh_access_token(account) != old

    def test_disconnect_deletes_the_account_and_ends_the_grant_or_says_how(self, stored, client_alice):
        connector = stored.connector
        self.connect(client_alice, stored)
        account = ConnectedAccount.objects.get()
        page = client_alice.post(reverse("account-disconnect", args=[account.pk]), follow=True)
        assert not ConnectedAccount.objects.exists()
        if type(connector).revoke is Connector.revoke:
            assert escape(connector.revoke_hint) in page.content.decode()
        else:
            assert not stored.grant_alive(account)

    def test_the_credentials_check_passes_good_values_and_names_a_bad_secret(self, stored, admin_client):
        connector = stored.connector
        config = ConnectorConfig.objects.get(service_id=connector.service_id)
        change = admin_client.get(reverse("admin:connectors_connectorconfig_change", args=[config.pk]))
        button = reverse("admin:connectors_connectorconfig_test_credentials", args=[config.pk])
        if not connector.can_check_credentials:
            assert button not in change.content.decode()
            assert admin_client.post(button).status_code == 302
            return
        assert button in change.content.decode()
        good = connector.check_credentials(stored.values)
        assert good and all(result.ok for result in good), good
        bad = connector.check_credentials(stored.wrong_values)
        assert not all(result.ok for result in bad), bad
        said = " ".join(f"{result.detail} {result.hint}" for result in bad)
        for key in connector.secret_keys:
            assert stored.wrong_values[key] not in said and stored.values[key] not in said
        page = admin_client.post(button)
        assert page.status_code == 200 and "Test credentials" in page.content.decode()

    def test_secrets_are_masked_in_the_admin_and_the_commands(self, stored, admin_client):
        connector = stored.connector
        config = ConnectorConfig.objects.get(service_id=connector.service_id)
        page = admin_client.get(reverse("admin:connectors_connectorconfig_change", args=[config.pk]))
        out = StringIO()
        call_command("show_connector", connector.service_id, stdout=out)
        raw = raw_values()
        for key in connector.secret_keys:
            secret = stored.values[key]
            assert secret[:-4] not in page.content.decode()
            assert secret[:-4] not in out.getvalue()
            assert secret not in str(raw)


def _local(url, connector):
    """The callback URL the provider sent the browser to, as a path of this site."""
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == connector.redirect_url()
    return f"{parts.path}?{parts.query}"


class FakeConnector(Connector):
    """A connector that declares only what it must, for the core's tests: every hook is the base's.

    Its provider is the Discord stand-in's OAuth2 endpoints seen as plain
    RFC 6749; the stand-in's client credentials are its own.
    """

    service_id = "test:fake"
    provider = "fake"
    name = "Fakeprovider"
    fields = (
        ConfigField(key="clientId", label="Client ID"),
        ConfigField(key="clientSecret", label="Client secret", secret=True),
        ConfigField(key="scopes", label="Scopes", default="identify"),
    )


def _grant_alive(standin, account):
    return standin.refresh_token_valid(account.refresh_token) or standin.access_token_valid(account.access_token)


def standin_harness(standin, connector, values):
    """The harness of a connector whose provider is the Discord stand-in (Discord's, the fake's)."""
    standin.app.redirect_uris = [connector.redirect_url()]

    def remove_app(account):
        revoke_at_standin(standin, account.refresh_token)

    return ProviderHarness(
        connector=connector,
        values=values,
        wrong_values={**values, "clientSecret": "not-the-secret-" + "x" * 24},
        approve=lambda url: decide(standin, url),
        cancel=lambda url: decide(standin, url, action="cancel"),
        grant_alive=lambda account: _grant_alive(standin, account),
        remove_app=remove_app,
    )


def slack_harness(standin, connector):
    """The harness of the Slack connector on the Slack stand-in, its redirect URL registered there."""
    app = standin.app
    app.redirect_uris = [connector.redirect_url()]
    values = {"clientId": app.client_id, "clientSecret": app.client_secret, "signingSecret": app.signing_secret}

    def remove_app(account):
        """The person removes the app in Slack: its token dies, as auth.revoke makes it."""
        answer = requests.post(
            standin.api_base_url + "/auth.revoke",
            headers={"Authorization": f"Bearer {account.access_token}"},
            timeout=5,
        )
        assert answer.json() == {"ok": True, "revoked": True}

    return ProviderHarness(
        connector=connector,
        values=values,
        # A secret Slack could have issued, but not this app's.
        wrong_values={**values, "clientSecret": "0123456789abcdef" * 2},
        approve=lambda url: decide(standin, url),
        cancel=lambda url: decide(standin, url, action="cancel"),
        grant_alive=lambda account: _grant_alive(standin, account),
        remove_app=remove_app,
    )


def revoke_at_standin(standin, token):
    """What the person removing the app at Discord (Authorized Apps) does to a grant."""
    answer = requests.post(
        standin.api_base_url + "/oauth2/token/revoke",
        data={"token": token},
        auth=(standin.app.client_id, standin.app.client_secret),
        timeout=5,
    )
    assert answer.status_code == 200


class FailingMailBackend(BaseEmailBackend):
    """A mail server that is down."""

    def send_messages(self, email_messages):
        raise SMTPException("the mail server is down")


def configure_from_env(settings, monkeypatch, **env):
    """The client-address settings backoffice/settings.py makes of these variables."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    made = runpy.run_path(str(REPO / "backoffice" / "settings.py"))
    for name in ("AXES_IPWARE_META_PRECEDENCE_ORDER", "AXES_IPWARE_PROXY_COUNT", "IPWARE_STRICT"):
        setattr(settings, name, made[name])


class SignedIn:
    """A person at the site through gunicorn: signed in with the login form, as a browser would."""

    def __init__(self, base, username, password):
        self.base, self.http = base, requests.Session()
        self.http.get(f"{base}/accounts/login/", timeout=10)
        signed_in = self.http.post(
            f"{base}/accounts/login/", timeout=10, allow_redirects=False,
            data={"username": username, "password": password,
                  "csrfmiddlewaretoken": self.http.cookies["csrftoken"]},
        )
        assert signed_in.status_code == 302, signed_in.text

    def connect(self, standin):
        """Connect, consent at the stand-in; return the callback's answer."""
        started = self.http.get(f"{self.base}/auth/discord/connect", timeout=10, allow_redirects=False)
        assert started.status_code == 302, started.text
        callback = urlsplit(decide(standin, started.headers["Location"]))
        return self.http.get(f"{self.base}{callback.path}?{callback.query}", timeout=30, allow_redirects=False)
