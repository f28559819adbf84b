"""The whole flow over real HTTP: this site on a live server, Discord as the stand-in."""

import re

import pytest
import requests
from django.contrib.auth import get_user_model
from django.core import mail

from connectors.config import config_values
from connectors.models import ConnectedAccount
from standin.discord import StandIn
from tests.conftest import SERVICE_ID


@pytest.fixture
def site(live_server, standin, settings, transactional_db):
    settings.PUBLIC_BASE_URL = live_server.url
    get_user_model().objects.create_user("carol", password="pw-carol-123")
    return live_server.url


def log_in(session, site, username, password):
    page = session.get(f"{site}/accounts/login/", timeout=5)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    answer = session.post(
        f"{site}/accounts/login/",
        data={"username": username, "password": password, "csrfmiddlewaretoken": token},
        headers={"Referer": f"{site}/accounts/login/"},
        timeout=5,
    )
    assert answer.url == f"{site}/accounts/", answer.text


def test_connect_and_disconnect_over_http(site, standin):
    browser = requests.Session()
    log_in(browser, site, "carol", "pw-carol-123")

    consent = browser.get(f"{site}/auth/discord/connect", timeout=5)
    assert consent.url.startswith(standin.authorize_url)
    assert "Authorize" in consent.text and "Cancel" in consent.text
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', consent.text))
    fields = {k: v.replace("&amp;", "&") for k, v in fields.items()}
    guild = re.search(r'<option value="(\d+)"', consent.text).group(1)

    accounts = browser.post(
        standin.authorize_url, data={**fields, "guild_id": guild, "action": "authorize"}, timeout=10
    )
    assert accounts.url == f"{site}/accounts/"
    assert "Connected Discord account Stand-in User" in accounts.text
    account = ConnectedAccount.objects.get()
    assert account.servers.get().server_id == guild
    assert account.access_token not in accounts.text

    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', accounts.text).group(1)
    after = browser.post(
        f"{site}/accounts/{account.pk}/disconnect",
        data={"csrfmiddlewaretoken": token},
        headers={"Referer": f"{site}/accounts/"},
        timeout=10,
    )
    assert "revoked the access" in after.text
    assert not ConnectedAccount.objects.exists()
    assert standin.count("revoke") == 1


def test_removing_the_app_at_discord_reaches_this_site_as_a_signed_event(site, standin):
    """The stand-in delivers to the live server: the account needs a reconnect, its user hears once."""
    carol = get_user_model().objects.get(username="carol")
    carol.email = "carol@example.com"
    carol.save()
    standin.app.event_webhooks_url = f"{site}/webhooks/discord/events"
    assert config_values(SERVICE_ID)["publicKey"] == standin.app.verify_key
    assert standin.ping() == 204

    browser = requests.Session()
    log_in(browser, site, "carol", "pw-carol-123")
    consent = browser.get(f"{site}/auth/discord/connect", timeout=5)
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', consent.text))
    fields = {k: v.replace("&amp;", "&") for k, v in fields.items()}
    browser.post(standin.authorize_url, data={**fields, "action": "authorize"}, timeout=10)
    account = ConnectedAccount.objects.get()
    assert standin.deliveries == [("PING", 204), ("APPLICATION_AUTHORIZED", 204)]
    assert account.status == ConnectedAccount.Status.ACTIVE and mail.outbox == []

    assert standin.remove_app(account.uid) == (1, 204)
    account.refresh_from_db()
    assert account.status == ConnectedAccount.Status.NEEDS_RECONNECT
    assert "removed at Discord" in account.status_reason
    (sent,) = mail.outbox
    assert sent.to == ["carol@example.com"] and "needs reconnecting" in sent.body
    page = browser.get(f"{site}/accounts/", timeout=5).text
    assert "The app was removed at Discord" in page and "Reconnect</a>" in page

    # Discord delivers again: nothing changes, nobody is mailed twice.
    changed_at = account.status_changed_at
    assert standin.send_event("APPLICATION_DEAUTHORIZED", account.uid) == 204
    account.refresh_from_db()
    assert account.status_changed_at == changed_at and len(mail.outbox) == 1

    # Anything signed with another key is refused.
    with StandIn() as impostor:
        impostor.app.event_webhooks_url = standin.app.event_webhooks_url
        assert impostor.ping() == 401
        assert impostor.send_event("APPLICATION_DEAUTHORIZED", impostor.user(account.uid)) == 401
