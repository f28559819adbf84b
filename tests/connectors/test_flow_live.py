"""The whole flow over real HTTP: this site on a live server, Discord as the stand-in."""

import re

import pytest
import requests
from django.contrib.auth import get_user_model

from connectors.models import ConnectedAccount


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
