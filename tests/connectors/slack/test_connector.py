"""The Slack connector against a faked Slack (responses): its answers, its errors, its checks."""

from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from django.core.exceptions import ValidationError
from django.utils import timezone

from connectors.config import config_update
from connectors.exceptions import InvalidGrant, NeedsReconnect, ProviderRejected, Unauthorized
from connectors.models import AccountServer, ConnectedAccount
from connectors.registry import registry
from connectors.tokens import fresh_access_token

API = "https://slack.com/api"
ACCESS = f"{API}/oauth.v2.access"
CLIENT_ID = "2141029472.691202649728"
CLIENT_SECRET = "e1b9e11dfcd19c1982d5de12921e17e8"
SIGNING_SECRET = "8f742231b10e8888abcd99e0c67291ac"
BOT_TOKEN = "xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy"
USER_TOKEN = "xoxp-17653672481-19874698323-aaaaaaaaaaaaaaaaaaaaaaaa"

slack = registry.get("appmixer:slack")


def answer(**changes):
    body = {
        "ok": True,
        "access_token": BOT_TOKEN,
        "token_type": "bot",
        "scope": "chat:write,channels:read",
        "bot_user_id": "U0KRQLJ9H",
        "app_id": "A0KRD7HC3",
        "team": {"name": "Slack Softball Team", "id": "T9TK3CUKW"},
        "enterprise": None,
        "authed_user": {"id": "U1234ABCD"},
    }
    body.update(changes)
    return body


@pytest.fixture
def configured_slack(db):
    values = {"clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET, "signingSecret": SIGNING_SECRET}
    config_update(service_id=slack.service_id, values=values)
    return values


def connect(client, mock, body, *, status=200):
    start = client.get("/auth/slack/connect")
    assert start.status_code == 302
    state = parse_qs(urlsplit(start["Location"]).query)["state"][0]
    mock.post(ACCESS, json=body, status=status)
    return client.get("/auth/slack/callback", {"code": "a-code", "state": state})


def test_the_authorize_url_asks_for_comma_separated_bot_scopes_and_the_user_scopes(client_alice, configured_slack):
    query = parse_qs(urlsplit(client_alice.get("/auth/slack/connect")["Location"]).query)
    assert query["scope"] == ["chat:write,channels:read"] and "user_scope" not in query
    config_update(service_id=slack.service_id, values={"userScopes": "search:read, users:read"})
    query = parse_qs(urlsplit(client_alice.get("/auth/slack/connect")["Location"]).query)
    assert query["user_scope"] == ["search:read,users:read"]
    assert query["redirect_uri"] == ["https://backoffice.example.com/auth/slack/callback"]


def test_a_bot_install_stores_the_user_the_workspace_and_the_bot_token(client_alice, configured_slack):
    with responses.RequestsMock() as mock:
        page = connect(client_alice, mock, answer())
    assert page.status_code == 302
    account = ConnectedAccount.objects.get(service_id=slack.service_id)
    assert (account.uid, account.access_token, account.scopes) == ("U1234ABCD", BOT_TOKEN, "chat:write channels:read")
    assert account.expires_at is None and account.refresh_token == ""
    server = AccountServer.objects.get(account=account)
    assert (server.server_id, server.name, server.token) == ("T9TK3CUKW", "Slack Softball Team", BOT_TOKEN)
    assert server.permission_names == ["chat:write", "channels:read"]
    html = client_alice.get("/accounts/").content.decode()
    assert "the app may: chat:write, channels:read" in html and BOT_TOKEN not in html


def test_with_user_scopes_the_account_holds_the_users_token_and_the_workspace_the_bots(client_alice, configured_slack):
    user = {"id": "U1234ABCD", "scope": "search:read", "access_token": USER_TOKEN, "token_type": "user"}
    with responses.RequestsMock() as mock:
        connect(client_alice, mock, answer(authed_user=user, refresh_token="xoxe-1-bot", expires_in=43200))
    account = ConnectedAccount.objects.get()
    # The bot's refresh token and lifetime are not the user's.
    assert (account.access_token, account.refresh_token, account.expires_at) == (USER_TOKEN, "", None)
    assert account.scopes == "search:read"
    assert AccountServer.objects.get().token == BOT_TOKEN


@pytest.mark.parametrize("error, title", [
    ("invalid_code", "Slack no longer accepts this grant (invalid_code)"),
    ("bad_client_secret", "Slack refused the client credentials (bad_client_secret)"),
    ("bad_redirect_uri", "Slack refused the request (bad_redirect_uri)"),
])
def test_an_error_slack_answers_with_200_is_our_clear_page_and_nothing_is_stored(client_alice, configured_slack,
                                                                                  error, title):
    with responses.RequestsMock() as mock:
        page = connect(client_alice, mock, {"ok": False, "error": error})
    assert page.status_code == 502
    assert title in page.content.decode()
    assert not ConnectedAccount.objects.exists()


def test_rotation_refreshes_the_pair_and_a_dead_refresh_token_asks_for_a_reconnect(client_alice, configured_slack):
    with responses.RequestsMock() as mock:
        connect(client_alice, mock, answer(access_token="xoxe.xoxb-1", refresh_token="xoxe-1-one", expires_in=43200))
    account = ConnectedAccount.objects.get()
    assert account.expires_at > timezone.now() + timedelta(hours=11)
    ConnectedAccount.objects.filter(pk=account.pk).update(expires_at=timezone.now())
    with responses.RequestsMock() as mock:
        refresh = mock.post(ACCESS, json=answer(access_token="xoxe.xoxb-2", refresh_token="xoxe-1-two",
                                                expires_in=43200, authed_user=None))
        assert fresh_access_token(account) == "xoxe.xoxb-2"
    sent = parse_qs(refresh.calls[0].request.body)
    assert sent["grant_type"] == ["refresh_token"] and sent["refresh_token"] == ["xoxe-1-one"]
    assert ConnectedAccount.objects.get().refresh_token == "xoxe-1-two"
    ConnectedAccount.objects.filter(pk=account.pk).update(expires_at=timezone.now())
    with responses.RequestsMock() as mock:
        mock.post(ACCESS, json={"ok": False, "error": "invalid_refresh_token"})
        with pytest.raises(NeedsReconnect):
            fresh_access_token(account)
    assert ConnectedAccount.objects.get().status == ConnectedAccount.Status.NEEDS_RECONNECT


def test_a_long_lived_token_is_used_as_it_is(client_alice, configured_slack):
    with responses.RequestsMock() as mock:
        connect(client_alice, mock, answer())
    with responses.RequestsMock():
        assert fresh_access_token(ConnectedAccount.objects.get()) == BOT_TOKEN


def test_disconnect_revokes_with_auth_revoke(client_alice, configured_slack):
    with responses.RequestsMock() as mock:
        connect(client_alice, mock, answer())
    account = ConnectedAccount.objects.get()
    with responses.RequestsMock() as mock:
        revoke = mock.post(f"{API}/auth.revoke", json={"ok": True, "revoked": True})
        page = client_alice.post(f"/accounts/{account.pk}/disconnect", follow=True)
    assert revoke.calls[0].request.headers["Authorization"] == f"Bearer {BOT_TOKEN}"
    assert "Slack revoked the access" in page.content.decode()
    assert not ConnectedAccount.objects.exists()


def test_the_grant_check_reads_the_scopes_slack_names(configured_slack):
    with responses.RequestsMock() as mock:
        mock.post(f"{API}/auth.test", json={"ok": True, "user_id": "U1"}, headers={"X-OAuth-Scopes": "chat:write,channels:read"})
        assert slack.grant_info(BOT_TOKEN) == {"scopes": "chat:write channels:read", "expires": ""}
        mock.post(f"{API}/auth.test", json={"ok": False, "error": "invalid_auth"})
        with pytest.raises(Unauthorized):
            slack.grant_info(BOT_TOKEN)


@pytest.mark.parametrize("error, failed", [
    ("invalid_code", []),
    ("bad_redirect_uri", ["Redirect URL registered"]),
    ("invalid_client_id", ["Client ID"]),
    ("bad_client_secret", ["Client secret"]),
    ("internal_error", ["Client ID and secret"]),
])
def test_test_credentials_proves_the_client_with_a_made_up_code(configured_slack, error, failed):
    with responses.RequestsMock() as mock:
        call = mock.post(ACCESS, json={"ok": False, "error": error})
        results = slack.check_credentials(configured_slack)
    assert [result.name for result in results if not result.ok] == failed
    assert call.calls[0].request.headers["Authorization"].startswith("Basic ")
    assert all(CLIENT_SECRET not in f"{result.detail} {result.hint}" for result in results)


@pytest.mark.parametrize("key, raw, message", [
    ("clientId", "2141029472-691202649728", "two numbers joined by a dot"),
    ("clientSecret", "Bot e1b9e11dfcd19c1982d5de12921e17e8", "32 hexadecimal characters"),
    ("signingSecret", "e1b9e11dfcd19c1982d5de12921e17e", "32 hexadecimal characters"),
    ("scopes", "chat:write;channels:read", "separated by commas"),
])
def test_malformed_values_are_refused_with_a_reason(key, raw, message):
    with pytest.raises(ValidationError, match=message):
        slack.field(key).normalise(raw)
    assert slack.field("clientSecret").normalise(f"  {CLIENT_SECRET}\n") == CLIENT_SECRET


def test_token_answer_errors_are_typed():
    with pytest.raises(InvalidGrant):
        slack.token_answer({"ok": False, "error": "code_already_used"})
    with pytest.raises(ProviderRejected):
        slack.token_answer({"ok": False})
