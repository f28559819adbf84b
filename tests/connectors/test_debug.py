"""Django's DEBUG page after a failed callback: every frame and the request, no secret or token."""

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
