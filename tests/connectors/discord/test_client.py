"""The Discord REST client: polite under rate limits, typed errors, one pool, the headers Discord asks for."""

import base64
import pickle
import threading

import pytest
import requests
import responses

from django.core.cache import cache
from django.db import connections, router

from connectors.discord import client
from connectors.exceptions import (
    InvalidGrant,
    ProviderError,
    ProviderRejected,
    ProviderUnavailable,
    RateLimited,
    Unauthorized,
)
from connectors.ratelimit import Pace
from tests.helpers import FakeClock, connector_settings

URL = "https://discord.test/api/v10/users/@me"
TOKEN = "user-access-token-value"
BOT_TOKEN = "bot-token-value"


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def waits(clock):
    return clock.waits


def paced_adapter(clock, **kwargs):
    return client.RateLimitAdapter(pace=Pace("discord", clock=clock.time, sleep=clock.sleep), **kwargs)


@pytest.fixture
def session(clock):
    """A session on a fresh adapter whose pace runs on a clock that sleeps at once."""
    with requests.Session() as session:
        session.mount("https://", paced_adapter(clock))
        yield session


@pytest.fixture
def api(settings, clock, monkeypatch):
    """The module's shared adapter, on the same clock."""
    connector_settings(settings, API_BASE_URL="https://discord.test/api/v10")
    monkeypatch.setattr(client._adapter, "pace", Pace("discord", clock=clock.time, sleep=clock.sleep))
    with responses.RequestsMock() as mock:
        yield mock


def limited(retry_after=0.25, is_global=False, **headers):
    return {"status": 429, "json": {"message": "You are being rate limited.", "retry_after": retry_after,
                                    "global": is_global}, "headers": headers}


def bucket(limit=5, remaining=4, reset_after=1.0, name="users-me"):
    """The rate-limit headers Discord sends with every answer."""
    return {"X-RateLimit-Bucket": name, "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(remaining), "X-RateLimit-Reset-After": str(reset_after)}


# RateLimitAdapter and the shared pace


@responses.activate
def test_a_429_is_waited_out_for_the_body_retry_after_then_retried(session, waits):
    responses.get(URL, **limited(retry_after=0.25))
    responses.get(URL, json={"id": "1"})

    answer = session.get(URL, timeout=5)

    assert answer.status_code == 200
    assert len(responses.calls) == 2
    assert sum(waits) == pytest.approx(0.25, abs=0.05)


@responses.activate
def test_a_429_with_only_a_retry_after_header_is_waited_out(session, waits):
    responses.get(URL, status=429, body="", headers={"Retry-After": "2"})
    responses.get(URL, json={"id": "1"})

    assert session.get(URL, timeout=5).status_code == 200
    assert sum(waits) == pytest.approx(2.0, abs=0.05)


@responses.activate
def test_a_429_asking_for_too_long_a_wait_is_not_sent_again(clock):
    with requests.Session() as session:
        session.mount("https://", paced_adapter(clock, max_wait=5))
        responses.get(URL, **limited(retry_after=30))
        with pytest.raises(RateLimited) as caught:
            session.get(URL, timeout=5)
    assert caught.value.retry_after == pytest.approx(30, abs=0.1)
    assert len(responses.calls) == 1
    assert clock.waits == []


@responses.activate
def test_odd_rate_limit_values_are_ignored_not_fatal(session, waits):
    responses.get(URL, json={"id": "1"}, headers={
        "X-RateLimit-Bucket": "b", "X-RateLimit-Limit": "lots", "X-RateLimit-Remaining": "-3",
        "X-RateLimit-Reset-After": "nan"})
    responses.get(URL, **limited(retry_after="soon"))
    responses.get(URL, json={"id": "1"})

    assert session.get(URL, timeout=5).status_code == 200
    assert session.get(URL, timeout=5).status_code == 200
    assert sum(waits) <= 1.0


@responses.activate
def test_an_empty_bucket_holds_the_next_request_until_it_resets(session, waits):
    responses.get(URL, json={"id": "1"}, headers=bucket(remaining=0, reset_after=2.5))
    responses.get(URL, json={"id": "1"}, headers=bucket(remaining=4))

    session.get(URL, timeout=5)
    assert waits == []
    session.get(URL, timeout=5)

    assert sum(waits) == pytest.approx(2.5, abs=0.05)


@responses.activate
def test_requests_of_one_bucket_are_spread_so_no_window_holds_more_than_its_limit(session, clock):
    responses.get(URL, json={"id": "1"}, headers=bucket(limit=5, remaining=4, reset_after=1.0))
    sent = []
    for _ in range(12):
        session.get(URL, timeout=5)
        sent.append(clock.now)

    for first in sent:
        assert sum(1 for at in sent if first <= at < first + 1.0) <= 5
    # ... and not much slower than the limit: 12 requests at 5 a second.
    assert sent[-1] - sent[0] < 3.0


@responses.activate
def test_each_token_keeps_its_own_count_in_a_bucket(session, clock):
    responses.get(URL, json={"id": "1"}, headers=bucket(limit=2, remaining=1, reset_after=1.0))
    for token in ("first-token", "second-token", "third-token"):
        session.get(URL, headers={"Authorization": f"Bearer {token}"}, timeout=5)

    assert clock.waits == []


@responses.activate
def test_a_global_429_holds_back_every_route(session, waits):
    other = "https://discord.test/api/v10/oauth2/@me"
    responses.get(URL, **limited(retry_after=1.5, is_global=True, **{"X-RateLimit-Global": "true"}))
    responses.get(URL, json={"id": "1"})
    responses.get(other, json={"scopes": []})

    session.get(URL, timeout=5)
    waited = sum(waits)
    session.get(other, timeout=5)

    assert waited == pytest.approx(1.5, abs=0.05)


def test_the_pace_is_shared_through_the_cache_not_kept_by_the_adapter(clock):
    """Two adapters stand for two processes: one's 429 holds the other back."""
    with responses.RequestsMock() as mock, requests.Session() as one, requests.Session() as two:
        one.mount("https://", paced_adapter(clock, max_retries_429=0))
        two.mount("https://", paced_adapter(clock))
        mock.get(URL, **limited(retry_after=3, **bucket(remaining=0, reset_after=3)))
        mock.get(URL, json={"id": "1"}, headers=bucket())

        assert one.get(URL, timeout=5).status_code == 429
        assert two.get(URL, timeout=5).status_code == 200

    assert sum(clock.waits) == pytest.approx(3, abs=0.05)


def test_no_credential_is_kept_in_the_cache(api):
    """The pace keys its counters by digests: the cache table holds no token, even for a moment."""
    api.get(URL, json={"id": "1"}, headers=bucket(remaining=0, reset_after=1))
    client.current_user(client.bearer(TOKEN))
    api.get(URL, json={"id": "2"}, headers=bucket(remaining=5, reset_after=1))
    client.current_user(client.bot(TOKEN))

    database = connections[router.db_for_read(cache.cache_model_class)]
    with database.cursor() as cursor:
        cursor.execute(f"SELECT cache_key, value FROM {database.ops.quote_name(cache._table)}")
        rows = cursor.fetchall()
    # The route's bucket, the spent Bearer token's hold, the bot token's window and the rest.
    assert len(rows) >= 4
    stored = repr(rows) + repr([pickle.loads(base64.b64decode(value)) for _, value in rows])
    assert TOKEN not in stored
    assert "@me" not in stored


# send and the typed errors


def test_send_retries_a_429_and_returns_the_body(api, waits):
    api.get(URL, **limited(retry_after=0.01))
    api.get(URL, json={"id": "42", "username": "alice"})

    assert client.current_user(client.bearer(TOKEN)) == {"id": "42", "username": "alice"}
    assert len(api.calls) == 2
    assert sum(waits) == pytest.approx(0.01, abs=0.05)


def test_send_gives_up_after_the_bounded_retries_with_rate_limited(api, waits):
    for _ in range(client._adapter.max_retries_429 + 1):
        api.get(URL, **limited(retry_after=0.5))

    with pytest.raises(RateLimited) as caught:
        client.current_user(client.bearer(TOKEN))

    assert caught.value.retry_after == 0.5
    assert len(api.calls) == client._adapter.max_retries_429 + 1
    assert sum(waits) == pytest.approx(0.5 * client._adapter.max_retries_429, abs=0.1)
    assert isinstance(caught.value, ProviderUnavailable)


def test_each_request_names_the_bot_as_discord_asks_and_carries_a_timeout(api, settings):
    api.get(URL, json={"id": "42"})

    client.current_user(client.bearer(TOKEN))

    request = api.calls[0].request
    assert request.headers["User-Agent"].startswith("DiscordBot (")
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.req_kwargs["timeout"] == settings.CONNECTORS["discord"]["HTTP_TIMEOUT"]


@pytest.mark.parametrize(
    "call, method, path, authorization",
    [
        (lambda: client.current_user(client.bot(BOT_TOKEN)), "GET", "/users/@me", f"Bot {BOT_TOKEN}"),
        (lambda: client.current_user_guilds(TOKEN), "GET", "/users/@me/guilds", f"Bearer {TOKEN}"),
        (lambda: client.current_authorization(TOKEN), "GET", "/oauth2/@me", f"Bearer {TOKEN}"),
        (lambda: client.current_application(BOT_TOKEN), "GET", "/oauth2/applications/@me", f"Bot {BOT_TOKEN}"),
    ],
)
def test_each_endpoint_sends_its_credentials(api, call, method, path, authorization):
    api.add(method, "https://discord.test/api/v10" + path, json={"ok": True})

    assert call() == {"ok": True}

    request = api.calls[0].request
    assert request.headers["Authorization"] == authorization
    assert request.headers["User-Agent"].startswith("DiscordBot (")


def test_revoke_authenticates_the_client_and_sends_a_form(api):
    api.post("https://discord.test/api/v10/oauth2/token/revoke", json={})

    client.revoke("refresh-me", client_id="123", client_secret="secret", token_type_hint="refresh_token")

    request = api.calls[0].request
    assert request.headers["Authorization"].startswith("Basic ")
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert request.body == "token=refresh-me&token_type_hint=refresh_token"


def test_a_body_that_is_not_json_is_a_provider_error(api):
    api.get(URL, body="<html>Cloudflare</html>", content_type="text/html")

    with pytest.raises(ProviderError, match="not JSON") as caught:
        client.current_user(client.bearer(TOKEN))

    assert not isinstance(caught.value, ProviderUnavailable)
    assert "Cloudflare" not in str(caught.value)


@pytest.mark.parametrize("status", [500, 502, 503])
def test_a_server_error_is_worth_retrying_later(api, status):
    api.get(URL, status=status, body="upstream details")

    with pytest.raises(ProviderUnavailable, match=f"HTTP {status}") as caught:
        client.current_user(client.bearer(TOKEN))

    assert "upstream details" not in str(caught.value)


def test_a_refused_token_is_unauthorized(api):
    api.get(URL, status=401, json={"message": "401: Unauthorized", "code": 0})

    with pytest.raises(Unauthorized) as caught:
        client.current_user(client.bearer(TOKEN))

    assert caught.value.status == 401
    assert len(api.calls) == 1
    assert TOKEN not in str(caught.value)


def test_a_dead_grant_is_invalid_grant(api):
    api.get(URL, status=400, json={"error": "invalid_grant", "error_description": "Invalid refresh_token"})

    with pytest.raises(InvalidGrant):
        client.current_user(client.bearer(TOKEN))


def test_another_refusal_keeps_discords_code(api):
    api.get(URL, status=403, json={"message": "Missing Permissions", "code": 50013})

    with pytest.raises(ProviderRejected) as caught:
        client.current_user(client.bearer(TOKEN))

    assert (caught.value.status, caught.value.code) == (403, 50013)
    assert not isinstance(caught.value, Unauthorized)


@pytest.mark.parametrize(
    "failure, message",
    [
        (requests.exceptions.ReadTimeout("read timed out"), "did not answer in time"),
        (requests.exceptions.ConnectTimeout("connect timed out"), "did not answer in time"),
        (requests.exceptions.ConnectionError("refused"), "could not be reached"),
    ],
)
def test_a_timeout_or_connection_failure_is_worth_retrying_later(api, failure, message):
    api.get(URL, body=failure)

    with pytest.raises(ProviderUnavailable, match=message):
        client.current_user(client.bearer(TOKEN))


# the pool


def test_one_session_per_thread_all_on_one_pool():
    mine = client.shared_session()
    assert client.shared_session() is mine
    theirs = []
    thread = threading.Thread(target=lambda: theirs.append(client.shared_session()))
    thread.start()
    thread.join(timeout=5)
    assert theirs[0] is not mine
    assert mine.get_adapter("https://discord.com") is theirs[0].get_adapter("https://discord.com") is client._adapter
    assert mine.headers["User-Agent"].startswith("DiscordBot (")


# the environment has no say


def test_a_netrc_entry_for_the_host_never_replaces_the_token_sent(api, monkeypatch, tmp_path):
    netrc = tmp_path / ".netrc"
    netrc.write_text("machine discord.test login someone password hunter2\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    api.get(URL, json={"id": "42"})

    client.current_user(client.bearer(TOKEN))

    assert api.calls[0].request.headers["Authorization"] == f"Bearer {TOKEN}"


@pytest.fixture
def proxy_environment(monkeypatch):
    """Proxy variables naming a port where nothing listens, loopback included."""
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")


def test_proxy_variables_in_the_environment_do_not_divert_discord_calls(standin, proxy_environment):
    assert client.current_user(client.bot(standin.app.bot_token))["bot"] is True


def test_discord_calls_go_through_the_discord_proxy_setting(standin, settings, monkeypatch):
    connector_settings(settings, PROXY="http://127.0.0.1:9")
    monkeypatch.setattr(client, "_local", threading.local())

    with pytest.raises(ProviderUnavailable, match="could not be reached"):
        client.current_user(client.bot(standin.app.bot_token))
