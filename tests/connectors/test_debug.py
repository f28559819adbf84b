"""Django's DEBUG page after a failed callback: every frame and the request, no secret or token;
and after any error, no infrastructure password (the database's, the cache's, the mail server's, a proxy's)."""

import html
import re
import sys
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography.fernet import Fernet
from django.views.debug import get_default_exception_reporter_filter

from connectors.debug import SecretsFilter, SecretsReporter
from standin.dev import store_standin_credentials
from tests.conftest import BOT_TOKEN, CLIENT_ID, CLIENT_SECRET
from tests.helpers import decide, finish, start

HIDDEN = repr(SecretsFilter.cleansed_substitute)
# As the leak audit does (tests/production): any 8 characters of a secret count as a leak.
WINDOW = 8


@pytest.fixture
def debug_client(client_alice, settings, standin, monkeypatch):
    """The test client as a browser sees the site with DEBUG on: a 500 is Django's technical page.

    The stand-in's application carries the known secrets of tests/conftest.py, stored as an
    operator would.
    """
    settings.DEBUG = True
    client_alice.raise_request_exception = False
    monkeypatch.setattr(standin.app, "client_secret", CLIENT_SECRET)
    monkeypatch.setattr(standin.app, "bot_token", BOT_TOKEN)
    store_standin_credentials(standin.app)
    return client_alice


def shown(page):
    """The page's (name, value) rows: local variables, GET, POST, META, as text."""
    rows = re.findall(r'<td>([^<]*)</td>\s*<td class="code"><pre>(.*?)</pre></td>', page, re.S)
    return [(html.unescape(name), html.unescape(value)) for name, value in rows]


def assert_debug_page_without(response, secrets):
    assert response.status_code == 500
    assert response["Content-Type"].startswith("text/html")
    page = response.content.decode()
    assert "Traceback" in page and "Local vars" in page
    text = html.unescape(page)
    for secret in secrets:
        parts = {secret[i : i + WINDOW] for i in range(len(secret) - WINDOW + 1)}
        assert not [part for part in parts if part in text], f"…{secret[-4:]} is on the debug page"
    return page


def callback_secrets(callback):
    """The stored client secret and bot token, the callback's code and state."""
    query = parse_qs(urlsplit(callback).query)
    return {CLIENT_SECRET, BOT_TOKEN, query["code"][0], query["state"][0]}


def test_the_default_filter_is_the_one_that_hides_secrets():
    assert isinstance(get_default_exception_reporter_filter(), SecretsFilter)


def test_an_error_while_the_token_answer_is_parsed_shows_no_secret_or_token(
    debug_client, standin, monkeypatch
):
    def broken(params, *args, **kwargs):
        raise RuntimeError("the token answer could not be parsed")

    monkeypatch.setattr("oauthlib.oauth2.rfc6749.parameters.validate_token_parameters", broken)
    callback = decide(standin, start(debug_client))

    response = finish(debug_client, callback)

    # Issued, unknown to us (the error came before we read it), and revoked all the same.
    [grant] = standin._grants
    assert not standin.access_token_valid(grant.access_token)
    page = assert_debug_page_without(
        response, callback_secrets(callback) | {grant.access_token, grant.refresh_token}
    )
    rows = shown(page)
    # oauthlib's and requests-oauthlib's frames: the names stay, the values go.
    for name in ("client_secret", "code", "body", "params", "values"):
        assert (name, HIDDEN) in rows, name
    assert ("client_id", repr(standin.app.client_id)) in rows
    assert "code=********************&amp;state=********************" in page


def test_an_error_after_the_code_exchange_shows_no_secret_or_token(debug_client, standin, monkeypatch):
    answers = []

    def broken(*, token, **kwargs):
        answers.append(dict(token))
        raise RuntimeError("the account could not be stored")

    monkeypatch.setattr("connectors.flow.account_connect", broken)
    callback = decide(standin, start(debug_client))

    response = finish(debug_client, callback)

    [answer] = answers
    page = assert_debug_page_without(
        response,
        callback_secrets(callback) | {answer["access_token"], answer["refresh_token"]},
    )
    rows = shown(page)
    for name in ("token", "values", "params", "code", "state"):
        assert (name, HIDDEN) in rows, name
    assert ("guild_id", repr(answer["guild"]["id"])) in rows


def raised_in(function, *args):
    try:
        function(*args)
    except ValueError:
        return sys.exc_info()
    raise AssertionError("did not raise")


def test_the_filter_hides_stored_values_and_tokens_under_any_name(configured):
    access, refresh = "access-" + "a" * 24, "refresh-" + "r" * 24

    def fails(answer):
        plain = answer["access_token"]  # a bare token under a name that says nothing
        pasted = f"copied {CLIENT_SECRET} here"
        bot = BOT_TOKEN.encode()
        header = {"Authorization": "Bot something-long-enough-to-be-one"}
        client_id = CLIENT_ID
        raise ValueError(f"failed for {plain}")

    exc_info = raised_in(fails, {"access_token": access, "refresh_token": refresh})
    variables = dict(SecretsFilter().get_traceback_frame_variables(None, exc_info[2].tb_next.tb_frame))

    assert set(variables) == {"answer", "plain", "pasted", "bot", "header", "client_id"}
    assert variables.pop("client_id") == CLIENT_ID
    assert set(variables.values()) == {SecretsFilter.cleansed_substitute}
    text = SecretsReporter(None, *exc_info).get_traceback_text()
    assert "failed for ********************" in text
    for secret in (access, refresh, CLIENT_SECRET, BOT_TOKEN):
        assert secret not in text


def test_the_request_shows_no_code_state_or_credentials(configured, rf):
    request = rf.post(
        "/auth/discord/callback?code=code-value-123456&state=state-value-123456&guild_id=42",
        {"clientSecret": "typed-secret-value", "note": "hello", "pasted": f"is {BOT_TOKEN}"},
        HTTP_AUTHORIZATION="Bearer token-value-123456789",
        HTTP_COOKIE="sessionid=session-value-123456",
    )
    reporter_filter = SecretsFilter()

    assert reporter_filter.get_query_parameters(request).dict() == {
        "code": "********************", "state": "********************", "guild_id": "42",
    }
    assert reporter_filter.get_post_parameters(request).dict() == {
        "clientSecret": "********************", "note": "hello", "pasted": "********************",
    }
    meta = reporter_filter.get_safe_request_meta(request)
    for name in ("QUERY_STRING", "HTTP_AUTHORIZATION", "HTTP_COOKIE"):
        assert meta[name] == "********************"
    assert reporter_filter.safe_path(request) == (
        "/auth/discord/callback?code=********************&state=********************&guild_id=42"
    )
    assert repr(reporter_filter.cleanse("request", request, set())) == (
        "<WSGIRequest: POST '/auth/discord/callback?code=********************"
        "&state=********************&guild_id=42'>"
    )


def test_a_stored_value_no_key_decrypts_leaves_the_report_working(configured, settings):
    settings.FIELD_ENCRYPTION_KEY = [Fernet.generate_key().decode()]

    def fails(secret_value):
        raise ValueError("boom")

    exc_info = raised_in(fails, CLIENT_SECRET)
    variables = dict(SecretsFilter().get_traceback_frame_variables(None, exc_info[2].tb_next.tb_frame))

    assert variables == {"secret_value": "********************"}


def test_django_s_own_filter_hides_the_callback_s_secrets_too(client_alice, standin, monkeypatch):
    """For a reporter that knows only Django's filter (DEBUG off): flow_finish names its secrets."""
    from django.views.debug import SafeExceptionReporterFilter

    monkeypatch.setattr("connectors.flow.account_connect", lambda **kwargs: 1 / 0)
    callback = decide(standin, start(client_alice))

    with pytest.raises(ZeroDivisionError) as raised:
        finish(client_alice, callback)

    [frame] = [tb.tb_frame for tb in _walk(raised.tb) if tb.tb_frame.f_code.co_name == "flow_finish"]
    variables = dict(SafeExceptionReporterFilter().get_traceback_frame_variables(None, frame))
    for name in ("params", "values", "token"):
        assert variables[name] == SafeExceptionReporterFilter.cleansed_substitute
    assert variables["connector"] is not None


def _walk(tb):
    while tb is not None:
        yield tb
        tb = tb.tb_next


# Infrastructure credentials (issue #27): the URLs of the database, the cache, the mail server
# and the proxies, as settings, as the environment runserver copies into request.META, and in
# frames. Each password is known, so that the page can be searched for it; the hosts stay shown.
CACHE_PASSWORD = "cachepass-s3cret"
PROXY_PASSWORD = "proxypass-s3cret"
MAIL_PASSWORD = "mailpass-s3cret"
REPLICA_PASSWORD = "replicapass-s3cret"
ENV_DATABASE_PASSWORD = "envdbpass-s3cret"
ENV_CACHE_PASSWORD = "envcachepass-s3cret"
ENV_MAIL_PASSWORD = "envmailpass-s3cret"
ENV_PROXY_PASSWORD = "envproxypass-s3cret"
INFRASTRUCTURE_PASSWORDS = (
    CACHE_PASSWORD, PROXY_PASSWORD, MAIL_PASSWORD, REPLICA_PASSWORD,
    ENV_DATABASE_PASSWORD, ENV_CACHE_PASSWORD, ENV_MAIL_PASSWORD, ENV_PROXY_PASSWORD,
)
# As runserver puts them in request.META, from the environment.
ENVIRONMENT = {
    "DATABASE_URL": f"postgres://backoffice:{ENV_DATABASE_PASSWORD}@db.internal:5432/backoffice",
    "CACHE_URL": f"rediss://:{ENV_CACHE_PASSWORD}@cache.internal:6380/1",
    "EMAIL_URL": f"smtp+tls://mailer:{ENV_MAIL_PASSWORD}@smtp.internal:587",
    "HTTPS_PROXY": f"http://egress:{ENV_PROXY_PASSWORD}@egress.internal:3128",
}
SHOWN_HOSTS = (
    "redis://********************@127.0.0.1:6390/0",
    "http://********************@proxy:3128",
    "postgres://********************@db.internal:5432/backoffice",
    "rediss://********************@cache.internal:6380/1",
    "smtp+tls://********************@smtp.internal:587",
    "http://********************@egress.internal:3128",
    "postgres://********************@replica.internal:5432/analytics",
)


@pytest.fixture
def infrastructure(settings):
    """Every URL-valued setting holds a known password: the cache, both proxies, the mail
    server, and a DATABASES-like setting of our own. The cache is never reached."""
    from tests.helpers import connector_settings

    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://:{CACHE_PASSWORD}@127.0.0.1:6390/0",
        },
    }
    proxy = f"http://proxyuser:{PROXY_PASSWORD}@proxy:3128"
    connector_settings(settings, "discord", PROXY=proxy)
    connector_settings(settings, "slack", PROXY=proxy)
    settings.EMAIL_HOST = "smtp.internal"
    settings.EMAIL_HOST_USER = "mailer"
    settings.EMAIL_HOST_PASSWORD = MAIL_PASSWORD
    settings.ANALYTICS_DATABASES = {
        "analytics": {
            "ENGINE": "django.db.backends.postgresql",
            "HOST": "replica.internal",
            "USER": "analytics",
            "PASSWORD": REPLICA_PASSWORD,
            "URL": f"postgres://analytics:{REPLICA_PASSWORD}@replica.internal:5432/analytics",
            "OPTIONS": {"service": f"host=replica.internal password={REPLICA_PASSWORD}"},
        }
    }
    return settings


def failing_behind_the_proxy(*args, **kwargs):
    """Fails holding the proxy's URL, under names that say nothing, in the ways code holds one."""
    from django.conf import settings

    proxy = settings.CONNECTORS["discord"]["PROXY"]
    proxies = {"https": proxy}
    bare = proxy.split("//", 1)[1]  # user:password@host:port, as some tools take it
    upstream = settings.CACHES["default"]["LOCATION"].rpartition("@")[0].rpartition(":")[2]
    raise RuntimeError(f"the proxy {proxy} refused the connection")


def assert_passwords_hidden_hosts_shown(text):
    found = {secret for secret in INFRASTRUCTURE_PASSWORDS for i in range(len(secret) - WINDOW + 1)
             if secret[i : i + WINDOW] in text}
    assert not found, f"passwords on the page: {sorted(found)}"
    for shown_host in SHOWN_HOSTS:
        assert shown_host in text, shown_host


def test_the_debug_page_shows_no_infrastructure_password(debug_client, infrastructure, monkeypatch):
    monkeypatch.setattr("connectors.views.accounts_of", failing_behind_the_proxy)

    response = debug_client.get("/accounts/", **ENVIRONMENT)

    page = assert_debug_page_without(response, {CLIENT_SECRET, BOT_TOKEN})
    text = html.unescape(page)
    assert_passwords_hidden_hosts_shown(text)
    rows = dict(shown(page))
    assert rows["proxy"] == "'http://********************@proxy:3128'"
    assert rows["proxies"] == "{'https': 'http://********************@proxy:3128'}"
    assert rows["bare"] == "'********************@proxy:3128'"
    assert rows["upstream"] == HIDDEN
    assert rows["EMAIL_HOST_PASSWORD"] == HIDDEN
    assert rows["EMAIL_HOST"] == "'smtp.internal'"
    assert rows["DATABASE_URL"] == "'postgres://********************@db.internal:5432/backoffice'"
    assert "the proxy http://********************@proxy:3128 refused the connection" in text


def test_the_plain_text_debug_page_shows_no_infrastructure_password(debug_client, infrastructure, monkeypatch):
    """What a client that does not take HTML (curl, an API client) is given."""
    monkeypatch.setattr("connectors.views.accounts_of", failing_behind_the_proxy)

    response = debug_client.get("/accounts/", HTTP_ACCEPT="application/json", **ENVIRONMENT)

    assert response.status_code == 500
    assert response["Content-Type"].startswith("text/plain")
    text = response.content.decode()
    assert "Traceback" in text and "failing_behind_the_proxy" in text
    assert_passwords_hidden_hosts_shown(text)
    assert "the proxy http://********************@proxy:3128 refused the connection" in text


def test_the_mailed_report_shows_no_infrastructure_password(infrastructure, configured, rf):
    """The text the admins' mail carries (AdminEmailHandler uses DEFAULT_EXCEPTION_REPORTER)."""
    from django.utils.module_loading import import_string

    request = rf.get("/accounts/", **ENVIRONMENT)
    try:
        failing_behind_the_proxy()
    except RuntimeError:
        exc_info = sys.exc_info()
    reporter_class = import_string(infrastructure.DEFAULT_EXCEPTION_REPORTER)

    reporter = reporter_class(request, *exc_info, is_email=True)

    text = reporter.get_traceback_text()
    assert "failing_behind_the_proxy" in text
    assert_passwords_hidden_hosts_shown(text)
    page = html.unescape(reporter.get_traceback_html())  # the mail's HTML part, with the frames' variables
    assert "proxies" in page
    assert_passwords_hidden_hosts_shown(page)


def test_urls_lose_their_userinfo_and_known_passwords_are_masked_anywhere(infrastructure):
    reporter_filter = SecretsFilter()
    cleansed = reporter_filter.cleanse_setting
    hidden = SecretsFilter.cleansed_substitute

    assert cleansed("X", "redis://:pw@cache:6379/0") == f"redis://{hidden}@cache:6379/0"
    assert cleansed("X", "https://user@git.example.com/x.git") == f"https://{hidden}@git.example.com/x.git"
    assert cleansed("X", ["http://a:b@h:1", ("user:pw@proxy:3128",)]) == [
        f"http://{hidden}@h:1", (f"{hidden}@proxy:3128",)
    ]
    assert cleansed("X", "host=db port=5432 password=pw user=app") == (
        f"host=db port=5432 password={hidden} user=app"
    )
    # A known password (a setting's), found in no URL here, in any text.
    assert cleansed("X", f"note {MAIL_PASSWORD} end") == f"note {hidden} end"
    # What has no credential stays as it was.
    for plain in ("https://discord.com/api/v10", "mailto:ops@example.com", "ops@example.com", 42, None):
        assert cleansed("X", plain) == plain
    # Names the connectors' rule says secret are hidden as settings too, not only Django's.
    assert cleansed("PROVIDER_CREDENTIALS", {"user": "x"}) == hidden
    assert cleansed("CALLBACK_STATE", "x") == hidden
    assert cleansed("CONNECTORS", {"x": {"API_KEY": "x", "PROXY": "http://u:p@h:1"}}) == {
        "x": {"API_KEY": hidden, "PROXY": f"http://{hidden}@h:1"}
    }


def test_a_known_password_is_hidden_in_the_frames_under_any_name(infrastructure, monkeypatch):
    """Passwords of the settings, of the environment and of URLs some frame holds, wherever they are."""
    monkeypatch.setenv("PGPASSWORD", "pg-env-s3cret-value")
    monkeypatch.setenv("REDIS_URL", "redis://:p%40ss-w0rd-s3cret@cache.internal:6379/0")

    def fails():
        note = f"tried {MAIL_PASSWORD} then pg-env-s3cret-value"
        decoded = "p@ss-w0rd-s3cret"
        dsn = "host=db.internal user=app password=unknown-to-us"
        remote = "ftp://someone:only-in-this-frame@files.internal/x"
        copied = "only-in-this-frame"
        port = 5432
        raise ValueError("boom")

    exc_info = raised_in(fails)
    variables = dict(SecretsFilter().get_traceback_frame_variables(None, exc_info[2].tb_next.tb_frame))

    hidden = SecretsFilter.cleansed_substitute
    assert variables == {
        "note": f"tried {hidden} then {hidden}",
        "decoded": hidden,
        "dsn": f"host=db.internal user=app password={hidden}",
        "remote": f"ftp://{hidden}@files.internal/x",
        "copied": hidden,
        "port": 5432,
    }
