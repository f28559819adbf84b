"""The bot at work: channels and a test message against a faked Discord, and the pages around them."""

import json

import pytest
import responses
from django.test import Client
from django.utils import timezone

from connectors.breaker import Breaker
from connectors.discord.bot import guild_channels, send_message
from connectors.exceptions import AccessLost, CircuitOpen, ProviderRejected
from connectors.models import AccountServer, ConnectedAccount
from tests.conftest import BOT_TOKEN, SERVICE_ID

API = "https://discord.com/api/v10"
GUILD = "200000000000000001"
CHANNELS = f"{API}/guilds/{GUILD}/channels"
GENERAL, NEWS = "300000000000000001", "300000000000000002"


def channel(id, name, type=0, position=0):
    return {"id": id, "name": name, "type": type, "position": position, "parent_id": None}


LISTED = [
    channel("300000000000000009", "Voice", type=2, position=0),
    channel(NEWS, "news", type=5, position=2),
    channel("300000000000000008", "Text channels", type=4, position=0),
    channel(GENERAL, "general", position=1),
]


@pytest.fixture
def server(alice, configured):
    account = ConnectedAccount.objects.create(
        user=alice, service_id=SERVICE_ID, uid="100000000000000003", username="alice_d",
        access_token="user-access-token-" + "x" * 20,
    )
    return AccountServer.objects.create(account=account, server_id=GUILD, name="Alice's server",
                                        added_at=timezone.now())


def page_url(server):
    return f"/accounts/{server.account_id}/servers/{server.server_id}/test-message"


def test_the_channels_are_those_the_bot_can_post_in_in_discords_order(server, configured):
    with responses.RequestsMock() as mock:
        call = mock.get(CHANNELS, json=LISTED)
        assert guild_channels(server, configured) == [(GENERAL, "general"), (NEWS, "news")]
    assert call.calls[0].request.headers["Authorization"] == f"Bot {BOT_TOKEN}"


def test_a_message_is_posted_as_the_bot_and_cut_to_discords_limit(server, configured):
    with responses.RequestsMock() as mock:
        call = mock.post(f"{API}/channels/{GENERAL}/messages", json={"id": "1", "channel_id": GENERAL})
        assert send_message(server, GENERAL, "x" * 2500)["id"] == "1"
    request = call.calls[0].request
    assert request.headers["Authorization"] == f"Bot {BOT_TOKEN}"
    assert json.loads(request.body) == {"content": "x" * 2000}


@pytest.mark.parametrize("status, code, lost", [
    (403, 50001, True), (403, 50013, True), (404, 10004, True), (404, 10003, False), (400, 50035, False),
])
def test_missing_access_is_told_apart_from_other_refusals(server, configured, status, code, lost):
    with responses.RequestsMock() as mock:
        mock.post(f"{API}/channels/{GENERAL}/messages", status=status, json={"message": "no", "code": code})
        with pytest.raises(AccessLost if lost else ProviderRejected) as caught:
            send_message(server, GENERAL, "hello")
    assert isinstance(caught.value, AccessLost) is lost


def test_an_open_breaker_keeps_the_bot_from_calling_discord(server, configured):
    breaker = Breaker(SERVICE_ID)
    for _ in range(3):
        breaker.failed()
    with responses.RequestsMock():
        with pytest.raises(CircuitOpen):
            send_message(server, GENERAL, "hello")


def test_the_accounts_page_asks_discord_nothing_and_offers_a_form_per_server(server, client_alice):
    with responses.RequestsMock():
        html = client_alice.get("/accounts/").content.decode()
    assert f'action="{page_url(server)}"' in html
    assert "Send a test message" in html


def test_posting_the_form_sends_to_the_first_channel_and_says_so(server, client_alice, alice):
    with responses.RequestsMock() as mock:
        mock.get(CHANNELS, json=LISTED)
        sent = mock.post(f"{API}/channels/{GENERAL}/messages", json={"id": "1"})
        page = client_alice.post(page_url(server), follow=True)
    assert "Sent a test message to #general in Alice&#x27;s server." in page.content.decode()
    assert "at the request of alice" in json.loads(sent.calls[0].request.body)["content"]


def test_the_form_page_lists_the_channels_and_posts_to_the_one_picked(server, client_alice):
    with responses.RequestsMock() as mock:
        mock.get(CHANNELS, json=LISTED)
        form = client_alice.get(page_url(server)).content.decode()
    assert f'<option value="{NEWS}">#news</option>' in form
    with responses.RequestsMock() as mock:
        mock.get(CHANNELS, json=LISTED)
        sent = mock.post(f"{API}/channels/{NEWS}/messages", json={"id": "2"})
        page = client_alice.post(page_url(server), {"channel": NEWS}, follow=True)
    assert len(sent.calls) == 1 and "#news" in page.content.decode()


def test_a_channel_the_bot_cannot_see_is_refused_before_posting(server, client_alice):
    with responses.RequestsMock() as mock:
        mock.get(CHANNELS, json=LISTED)
        page = client_alice.post(page_url(server), {"channel": "300000000000000009"}, follow=True)
    assert "No test message was sent to Alice&#x27;s server: The bot cannot see that channel." in page.content.decode()


def test_missing_access_marks_the_server_on_the_page_and_in_the_admin(server, client_alice, admin_client):
    with responses.RequestsMock() as mock:
        mock.get(CHANNELS, json=LISTED)
        mock.post(f"{API}/channels/{GENERAL}/messages", status=403, json={"message": "Missing Access", "code": 50001})
        page = client_alice.post(page_url(server), follow=True).content.decode()
    assert "No test message was sent to Alice&#x27;s server: Discord: Missing Access" in page
    assert "The bot can no longer act here (Discord: Missing Access)." in page
    assert 'href="/auth/discord/connect">Add the bot again</a>' in page
    admin = admin_client.get(f"/admin/connectors/connectedaccount/{server.account_id}/change/").content.decode()
    assert "lost " in admin and "Discord: Missing Access" in admin
    with responses.RequestsMock() as mock:
        mock.get(CHANNELS, json=LISTED)
        mock.post(f"{API}/channels/{GENERAL}/messages", json={"id": "3"})
        client_alice.post(page_url(server))
    assert AccountServer.objects.get().access_lost_at is None


def test_only_the_owner_and_only_with_the_csrf_token(server, django_user_model):
    bob = Client()
    bob.force_login(django_user_model.objects.create_user("bob", password="pw-bob-123"))
    with responses.RequestsMock():
        assert bob.post(page_url(server)).status_code == 404
        assert bob.get(page_url(server)).status_code == 404
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(server.account.user)
    with responses.RequestsMock():
        assert strict.post(page_url(server)).status_code == 403
