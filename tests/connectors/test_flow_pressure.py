"""The callback under pressure: bounded waits, single-use state after a 5xx, odd values, one grant per account."""

import time
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from django.test import Client

from connectors.models import AccountServer, ConnectedAccount
from tests.conftest import CLIENT_ID
from tests.helpers import config_admin_url, connect, connector_settings, decide, finish, start

API = "https://discord.test/api/v10"


def live_grants(standin, user):
    return [grant for grant in standin.grants if grant.user.id == user.id]


# Bounded waits


def test_a_long_retry_after_gets_our_busy_page_at_once_not_a_worker_timeout(client_alice, standin):
    callback = decide(standin, start(client_alice))
    standin.rate_limit_next(count=1, retry_after=40, is_global=False)
    started = time.monotonic()

    response = finish(client_alice, callback)

    assert time.monotonic() - started < 2
    assert response.status_code == 503
    assert response["Retry-After"] == "40"
    page = response.content.decode()
    assert "Discord is busy" in page and "Please try again in 40 seconds." in page
    assert not ConnectedAccount.objects.exists()
    # The state was used: the same link cannot connect later.
    assert finish(client_alice, callback).status_code == 400


def test_waits_add_up_to_at_most_request_max_wait(client_alice, standin, settings):
    """Two waits of 3 s each: the second would pass REQUEST_MAX_WAIT (5 s), so it is not taken."""
    callback = decide(standin, start(client_alice))
    standin.rate_limit_next(count=2, retry_after=3, is_global=False)
    started = time.monotonic()

    response = finish(client_alice, callback)

    assert 3 <= time.monotonic() - started < settings.REQUEST_MAX_WAIT
    assert response.status_code == 503
    assert not ConnectedAccount.objects.exists()


def test_test_credentials_and_admin_actions_answer_within_the_bound(admin_client, client_alice, standin):
    connect(client_alice, standin)
    standin.rate_limit_next(count=20, retry_after=40, is_global=True)
    started = time.monotonic()

    tested = admin_client.post(config_admin_url("test_credentials"))
    acted = admin_client.post(
        "/admin/connectors/connectedaccount/",
        {"action": "refresh_now", "_selected_action": [ConnectedAccount.objects.get().pk]},
        follow=True,
    )

    assert time.monotonic() - started < 4
    assert tested.status_code == 200
    assert acted.status_code == 200
    assert "rate" in acted.content.decode().lower()


def test_commands_may_wait_longer_than_a_request(standin, alice, settings):
    from connectors.tokens import fresh_access_token
    from tests.helpers import seed_account

    settings.REQUEST_MAX_WAIT = 0.01
    account = seed_account(standin, alice, expires_in=60)
    standin.rate_limit_next(count=1, retry_after=0.5, is_global=True)

    assert standin.access_token_valid(fresh_access_token(account))


# Single-use state, whatever the response


def test_a_callback_that_ends_in_a_server_error_has_used_its_state(client_alice, standin):
    callback = decide(standin, start(client_alice))
    standin.fail_next("token.authorization_code", status=502)
    assert finish(client_alice, callback).status_code == 502

    again = finish(client_alice, callback)

    assert again.status_code == 400
    assert not ConnectedAccount.objects.exists()


def test_a_callback_that_crashes_has_used_its_state(client_alice, standin, monkeypatch):
    callback = decide(standin, start(client_alice))
    client_alice.raise_request_exception = False
    monkeypatch.setattr("connectors.flow.account_connect", lambda **kwargs: 1 / 0)
    assert finish(client_alice, callback).status_code == 500
    monkeypatch.undo()

    assert finish(client_alice, callback).status_code == 400
    assert not ConnectedAccount.objects.exists()
    # ... and the grant the crashed callback obtained was revoked at Discord.
    assert live_grants(standin, standin.logged_in) == []


# What Discord sends is made safe before it is stored


def test_long_and_nul_bearing_names_are_stored_cut_and_clean(client_alice, standin):
    person = standin.add_user(username="u" * 300 + "\x00", global_name="Name\x00 with\x07 controls" + "é" * 200,
                              email="not an email", avatar="a/b\x00c", guilds=[{"name": "S" * 500 + "\x00"}])
    standin.login(person)

    assert connect(client_alice, standin).status_code == 302

    account = ConnectedAccount.objects.get()
    assert account.username == "u" * 100
    assert account.display_name == ("Name with controls" + "é" * 200)[:100]
    assert account.email == ""
    assert "\x00" not in account.avatar_url
    assert account.servers.get().name == "S" * 200


def test_a_forged_40_digit_permissions_value_is_not_stored(client_alice, standin):
    url = start(client_alice)
    callback = decide(standin, url)
    query = {k: v[0] for k, v in parse_qs(urlsplit(callback).query).items()}
    query["permissions"] = "9" * 40

    response = client_alice.get("/auth/discord/callback", query)

    assert response.status_code == 302
    assert AccountServer.objects.get().permissions != "9" * 40


@pytest.fixture
def mocked_discord(client_alice, configured, settings):
    """The callback against Discord faked with ``responses``, to send what the stand-in never would."""
    connector_settings(settings, API_BASE_URL=API)
    url = start(client_alice)
    state = parse_qs(urlsplit(url).query)["state"][0]
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.post(f"{API}/oauth2/token/revoke", json={})
        yield mock, state


def token_answer(**changes):
    answer = {"access_token": "new-access", "refresh_token": "new-refresh", "token_type": "Bearer",
              "expires_in": 604800, "scope": "identify guilds"}
    answer.update(changes)
    return {key: value for key, value in answer.items() if value is not ...}


USER = {"id": "80351110224678912", "username": "nelly", "global_name": "Nelly", "avatar": None}

ODD_TOKENS = {
    "expires_in not a number": token_answer(expires_in="soon"),
    "expires_in huge": token_answer(expires_in=10 ** 30),
    "expires_in negative": token_answer(expires_in=-5),
    "token_type a list": token_answer(token_type=["Bearer"]),
    "access_token empty": token_answer(access_token=""),
    "access_token with NUL": token_answer(access_token="abc\x00def"),
    "refresh_token a number": token_answer(refresh_token=12345),
    "guild a string": token_answer(guild="123"),
    "guild id not a snowflake": token_answer(guild={"id": "1; DROP TABLE", "name": "x"}),
}

ODD_USERS = {
    "no id": {**USER, "id": None},
    "id a number": {**USER, "id": 80351110224678912},
    "id of 40 digits": {**USER, "id": "9" * 40},
    "username a list": {**USER, "username": ["nelly"]},
    "global_name an object": {**USER, "global_name": {"name": "x"}},
    "not an object": ["nelly"],
}


@pytest.mark.parametrize("answer", ODD_TOKENS.values(), ids=ODD_TOKENS.keys())
def test_an_odd_token_answer_gets_our_page_and_the_grant_is_revoked(client_alice, mocked_discord, answer):
    mock, state = mocked_discord
    mock.post(f"{API}/oauth2/token", json=answer)
    mock.get(f"{API}/users/@me", json=USER)

    response = client_alice.get("/auth/discord/callback", {"code": "c0de", "state": state})

    assert response.status_code == 502
    assert "could not connect" in response.content.decode()
    assert not ConnectedAccount.objects.exists()
    revokes = [call for call in mock.calls if call.request.url.endswith("/oauth2/token/revoke")]
    usable = {answer[key] for key in ("access_token", "refresh_token") if isinstance(answer[key], str) and answer[key]}
    if usable:
        assert len(revokes) == 1
        assert any(token in revokes[0].request.body for token in usable)


@pytest.mark.parametrize("user", ODD_USERS.values(), ids=ODD_USERS.keys())
def test_an_odd_profile_gets_our_page_and_the_grant_is_revoked(client_alice, mocked_discord, user):
    mock, state = mocked_discord
    mock.post(f"{API}/oauth2/token", json=token_answer())
    mock.get(f"{API}/users/@me", json=user)

    response = client_alice.get("/auth/discord/callback", {"code": "c0de", "state": state})

    assert response.status_code == 502
    assert not ConnectedAccount.objects.exists()
    revokes = [call for call in mock.calls if call.request.url.endswith("/oauth2/token/revoke")]
    assert len(revokes) == 1 and "new-refresh" in revokes[0].request.body


def test_empty_and_null_optional_fields_are_stored_empty(client_alice, mocked_discord):
    mock, state = mocked_discord
    mock.post(f"{API}/oauth2/token", json=token_answer(scope=None, token_type=None, expires_in=None,
                                                       refresh_token=None))
    mock.get(f"{API}/users/@me", json={"id": USER["id"], "username": None, "global_name": "", "email": None})

    response = client_alice.get("/auth/discord/callback", {"code": "c0de", "state": state})

    assert response.status_code == 302
    account = ConnectedAccount.objects.get()
    assert (account.username, account.display_name, account.email, account.scopes) == ("", "", "", "")
    assert account.expires_at is None and account.token_type == "Bearer"


def test_a_token_answer_oauthlib_cannot_read_is_still_revoked(client_alice, mocked_discord):
    mock, state = mocked_discord
    mock.post(f"{API}/oauth2/token", json=token_answer(expires_in="in a week"))

    response = client_alice.get("/auth/discord/callback", {"code": "c0de", "state": state})

    assert response.status_code == 502
    revokes = [call for call in mock.calls if call.request.url.endswith("/oauth2/token/revoke")]
    assert len(revokes) == 1 and "new-refresh" in revokes[0].request.body
    assert CLIENT_ID not in response.content.decode()


# One grant per account


def test_reconnecting_an_identity_revokes_the_grant_it_replaces(client_alice, standin):
    connect(client_alice, standin)
    first = ConnectedAccount.objects.get()

    connect(client_alice, standin)

    stored = ConnectedAccount.objects.get()
    assert stored.pk == first.pk
    assert not standin.refresh_token_valid(first.refresh_token)
    assert standin.refresh_token_valid(stored.refresh_token)
    assert len(live_grants(standin, standin.logged_in)) == 1


def test_many_users_reconnecting_leave_as_many_live_grants_as_accounts(client, standin, django_user_model):
    people = []
    for index in range(5):
        user = django_user_model.objects.create_user(f"user{index}")
        person = standin.add_user(username=f"person{index}")
        people.append((user, person))
    for _ in range(3):
        for user, person in people:
            browser = Client()
            browser.force_login(user)
            standin.login(person)
            assert connect(browser, standin).status_code == 302

    assert ConnectedAccount.objects.count() == 5
    assert sum(len(live_grants(standin, person)) for _, person in people) == 5


# The bot's permissions: Discord's word, never the URL's


def test_the_permissions_stored_are_those_discord_granted_not_the_urls(client_alice, standin):
    from connectors.config import config_update

    config_update(service_id="appmixer:discord", values={"permissions": str(1 << 11 | 1 << 10)})
    callback = decide(standin, start(client_alice), permissions=str(1 << 11))
    query = {k: v[0] for k, v in parse_qs(urlsplit(callback).query).items()}
    query["permissions"] = "8"  # Administrator, typed into the address bar

    assert client_alice.get("/auth/discord/callback", query).status_code == 302

    server = AccountServer.objects.get()
    assert (server.permissions, server.permissions_source) == (str(1 << 11), AccountServer.Source.GRANTED)
    assert "bot may: Send Messages; granted (as the provider says)" in client_alice.get("/accounts/").content.decode()


def test_a_connector_that_names_no_permissions_shows_the_raw_value(client_alice, standin, monkeypatch):
    from connectors.base import Connector
    from connectors.registry import registry

    finish(client_alice, decide(standin, start(client_alice), permissions=str(1 << 11)))
    monkeypatch.setattr(type(registry.get("appmixer:discord")), "describe_permissions", Connector.describe_permissions)

    assert "permissions 2048; granted" in client_alice.get("/accounts/").content.decode()


def test_without_discords_word_the_request_is_stored_and_marked_requested(client_alice, mocked_discord):
    mock, state = mocked_discord
    mock.post(f"{API}/oauth2/token", json=token_answer(guild={"id": "81384788765712384", "name": "Guild"}))
    mock.get(f"{API}/users/@me", json=USER)

    response = client_alice.get(
        "/auth/discord/callback", {"code": "c0de", "state": state, "guild_id": "81384788765712384", "permissions": "8"}
    )

    assert response.status_code == 302
    server = AccountServer.objects.get()
    assert server.permissions_source == AccountServer.Source.REQUESTED
    assert server.permissions != "8"
