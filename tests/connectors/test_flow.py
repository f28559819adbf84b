"""The connect flow end to end, against the local Discord stand-in over real HTTP."""

from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.utils.html import escape

from connectors.models import AccountServer, ConnectedAccount
from connectors.discord.permissions import DEFAULT_PERMISSIONS

from tests.helpers import REDIRECT_URI, connect, connector_settings, decide, finish, start


def test_connect_sends_the_documented_authorize_request(client_alice, standin):
    url = start(client_alice)
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == standin.authorize_url
    assert query["response_type"] == ["code"]
    assert query["client_id"] == [standin.app.client_id]
    assert query["redirect_uri"] == [REDIRECT_URI]
    assert query["scope"] == ["identify bot applications.commands"]
    assert query["permissions"] == [str(DEFAULT_PERMISSIONS)]
    assert query["integration_type"] == ["0"]
    assert len(query["state"][0]) >= 32


def test_full_flow_stores_the_account_and_the_server_the_bot_joined(client_alice, alice, standin):
    response = connect(client_alice, standin)
    assert response.status_code == 302
    assert response["Location"] == "/accounts/"

    account = ConnectedAccount.objects.get(user=alice)
    discord_user = standin.logged_in
    assert account.uid == discord_user.id
    assert account.username == discord_user.username
    assert account.display_name == discord_user.global_name
    assert account.status == ConnectedAccount.Status.ACTIVE
    assert set(account.scope_list) >= {"identify", "bot", "applications.commands"}
    assert standin.access_token_valid(account.access_token)
    assert standin.refresh_token_valid(account.refresh_token)
    assert account.expires_at is not None
    server = account.servers.get()
    assert server.server_id == discord_user.guilds[0].id
    assert server.name == discord_user.guilds[0].name
    assert standin.count("token.authorization_code") == 1

    page = client_alice.get("/accounts/")
    html = page.content.decode()
    assert discord_user.global_name in html
    assert escape(discord_user.guilds[0].name) in html
    assert "The bot was added to" in html
    assert account.access_token not in html
    assert account.refresh_token not in html


def test_accounts_page_lists_only_the_users_own_accounts(client_alice, standin, db):
    from django.test import Client

    connect(client_alice, standin)
    bob = Client()
    bob.force_login(get_user_model().objects.create_user("bob", password="pw-bob-123"))
    html = bob.get("/accounts/").content.decode()
    assert standin.logged_in.global_name not in html
    assert "No account connected yet" in html


@pytest.mark.parametrize("state", ["forged-state-value", ""])
def test_a_forged_or_missing_state_changes_nothing(client_alice, standin, state):
    callback = decide(standin, start(client_alice))
    code = parse_qs(urlsplit(callback).query)["code"][0]
    response = client_alice.get("/auth/discord/callback", {"code": code, "state": state})
    assert response.status_code == 400
    assert "not valid for your session" in response.content.decode()
    assert "Start again" in response.content.decode()
    assert not ConnectedAccount.objects.exists()
    assert standin.count("token.authorization_code") == 0


def test_a_replayed_callback_changes_nothing(client_alice, standin):
    callback = decide(standin, start(client_alice))
    assert finish(client_alice, callback).status_code == 302
    account = ConnectedAccount.objects.get()
    replay = finish(client_alice, callback)
    assert replay.status_code == 400
    assert ConnectedAccount.objects.get().access_token == account.access_token
    assert standin.count("token.authorization_code") == 1


def test_an_expired_state_is_refused(client_alice, standin, monkeypatch):
    import connectors.flow

    callback = decide(standin, start(client_alice))
    later = connectors.flow.time.time() + connectors.flow.STATE_TTL + 1
    monkeypatch.setattr(connectors.flow.time, "time", lambda: later)
    response = finish(client_alice, callback)
    assert response.status_code == 400
    assert "expired" in response.content.decode()
    assert not ConnectedAccount.objects.exists()


def test_a_state_from_another_session_is_refused(client_alice, standin, client, db):
    from django.test import Client

    callback = decide(standin, start(client_alice))
    mallory = Client()
    mallory.force_login(get_user_model().objects.create_user("mallory", password="pw-m-123"))
    response = finish(mallory, callback)
    assert response.status_code == 400
    assert not ConnectedAccount.objects.exists()


def test_a_user_who_cancels_sees_a_calm_page(client_alice, standin):
    response = finish(client_alice, decide(standin, start(client_alice), action="cancel"))
    assert response.status_code == 200
    html = response.content.decode()
    assert "Nothing was connected" in html
    assert "cancelled" in html
    assert not ConnectedAccount.objects.exists()
    assert standin.count("token") == 0


def test_a_provider_error_other_than_cancel_shows_a_clear_page(client_alice, standin):
    url = start(client_alice)
    state = parse_qs(urlsplit(url).query)["state"][0]
    response = client_alice.get("/auth/discord/callback", {"error": "invalid_scope", "state": state})
    assert response.status_code == 400
    assert "invalid_scope" in response.content.decode()
    assert not ConnectedAccount.objects.exists()


def test_token_endpoint_failure_shows_a_page_and_stores_nothing(client_alice, standin, caplog):
    callback = decide(standin, start(client_alice))
    standin.fail_next("token", status=500)
    response = finish(client_alice, callback)
    assert response.status_code == 502
    assert "server error" in response.content.decode()
    assert not ConnectedAccount.objects.exists()
    code = parse_qs(urlsplit(callback).query)["code"][0]
    assert code not in caplog.text


def test_token_endpoint_timeout_shows_a_page_and_stores_nothing(client_alice, standin, settings):
    connector_settings(settings, HTTP_TIMEOUT=0.3)
    callback = decide(standin, start(client_alice))
    standin.delay_next("token", seconds=1.0)
    response = finish(client_alice, callback)
    assert response.status_code == 502
    assert "did not answer in time" in response.content.decode()
    assert not ConnectedAccount.objects.exists()


def test_a_failing_profile_request_stores_nothing(client_alice, standin):
    callback = decide(standin, start(client_alice))
    standin.fail_next("users_me", status=401)
    response = finish(client_alice, callback)
    assert response.status_code == 502
    assert not ConnectedAccount.objects.exists()


def test_connecting_the_same_identity_twice_updates_one_account(client_alice, standin):
    connect(client_alice, standin)
    first = ConnectedAccount.objects.get()
    user = standin.logged_in
    second_guild = standin.add_guild(user, name="Second server")
    connect(client_alice, standin, guild_id=second_guild.id)
    account = ConnectedAccount.objects.get()
    assert account.pk == first.pk
    assert account.access_token != first.access_token
    assert [s.name for s in account.servers.all()] == ["Second server", user.guilds[0].name]


def test_a_user_may_connect_a_second_identity(client_alice, alice, standin):
    connect(client_alice, standin)
    standin.login(standin.add_user(username="alice_alt", global_name="Alice Alt"))
    connect(client_alice, standin)
    assert sorted(ConnectedAccount.objects.filter(user=alice).values_list("username", flat=True)) == [
        "alice_alt",
        "standin_user",
    ]


def test_disconnect_revokes_at_discord_and_deletes_the_account(client_alice, standin):
    connect(client_alice, standin)
    account = ConnectedAccount.objects.get()
    response = client_alice.post(f"/accounts/{account.pk}/disconnect", follow=True)
    assert "revoked the access" in response.content.decode()
    assert not ConnectedAccount.objects.exists()
    assert not AccountServer.objects.exists()
    assert standin.count("revoke") == 1
    assert not standin.refresh_token_valid(account.refresh_token)
    assert not standin.access_token_valid(account.access_token)


def test_disconnect_needs_post(client_alice, standin):
    connect(client_alice, standin)
    account = ConnectedAccount.objects.get()
    assert client_alice.get(f"/accounts/{account.pk}/disconnect").status_code == 405
    assert ConnectedAccount.objects.exists()


def test_another_users_account_cannot_be_disconnected(client_alice, standin, client, db):
    connect(client_alice, standin)
    account = ConnectedAccount.objects.get()
    client.force_login(get_user_model().objects.create_user("bob", password="pw-bob-123"))
    assert client.post(f"/accounts/{account.pk}/disconnect").status_code == 404
    assert ConnectedAccount.objects.filter(pk=account.pk).exists()
    assert standin.count("revoke") == 0


def test_disconnect_still_removes_the_account_when_revocation_fails(client_alice, standin):
    connect(client_alice, standin)
    account = ConnectedAccount.objects.get()
    standin.fail_next("revoke", status=503)
    response = client_alice.post(f"/accounts/{account.pk}/disconnect", follow=True)
    page = response.content.decode()
    assert "Discord did not confirm that the access was revoked" in page
    assert "Authorized Apps" in page
    assert not ConnectedAccount.objects.exists()


def test_next_on_this_site_is_followed(client_alice, standin):
    callback = decide(standin, start(client_alice, next_url="/accounts/?from=connect"))
    assert finish(client_alice, callback)["Location"] == "/accounts/?from=connect"


@pytest.mark.parametrize("next_url", ["https://evil.example.com/", "//evil.example.com/x"])
def test_next_off_site_is_ignored(client_alice, standin, next_url):
    callback = decide(standin, start(client_alice, next_url=next_url))
    assert finish(client_alice, callback)["Location"] == "/accounts/"


def test_connect_without_configuration_says_so_instead_of_redirecting(client_alice, db):
    response = client_alice.get("/auth/discord/connect")
    assert response.status_code == 503
    assert "not set up yet" in response.content.decode()


def test_connect_needs_a_logged_in_user(client, standin):
    response = client.get("/auth/discord/connect")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_unknown_provider_is_404(client_alice, standin):
    assert client_alice.get("/auth/nosuch/connect").status_code == 404


def test_without_the_bot_scope_the_account_is_stored_and_the_page_says_the_bot_was_not_added(
    client_alice, standin
):
    from connectors.config import config_update

    config_update(service_id="appmixer:discord", values={"scopes": "identify email"})
    url = start(client_alice)
    query = parse_qs(urlsplit(url).query)
    assert query["scope"] == ["identify email"]
    assert "permissions" not in query and "integration_type" not in query
    response = finish(client_alice, decide(standin, url))
    assert response.status_code == 302
    account = ConnectedAccount.objects.get()
    assert account.email == standin.logged_in.email
    assert not account.servers.exists()
    page = client_alice.get("/accounts/").content.decode()
    assert "the bot was not added to a server" in page


def test_the_permissions_left_ticked_at_discord_are_recorded(client_alice, standin):
    from connectors.config import config_update

    config_update(service_id="appmixer:discord", values={"permissions": str(1 << 11 | 1 << 10)})
    url = start(client_alice)
    assert parse_qs(urlsplit(url).query)["permissions"] == [str(1 << 11 | 1 << 10)]
    finish(client_alice, decide(standin, url, permissions=str(1 << 11)))
    assert ConnectedAccount.objects.get().servers.get().permissions == str(1 << 11)


def test_a_wrong_encryption_key_gives_our_page_on_connect_and_callback_not_a_500(
    client_alice, configured, settings, caplog
):
    from cryptography.fernet import Fernet

    state = parse_qs(urlsplit(start(client_alice)).query)["state"][0]
    settings.FIELD_ENCRYPTION_KEY = [Fernet.generate_key().decode()]

    for response in (
        client_alice.get("/auth/discord/connect"),
        client_alice.get("/auth/discord/callback", {"code": "c0de", "state": state}),
    ):
        assert response.status_code == 503
        assert "cannot read its stored connection settings" in response.content.decode()
        assert "FIELD_ENCRYPTION_KEY" not in response.content.decode()
    assert "connectors.E001" in caplog.text and "FIELD_ENCRYPTION_KEY" in caplog.text
    assert client_alice.get("/accounts/").status_code == 200
