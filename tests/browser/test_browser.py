"""The operator's and the end user's paths through real Chromium.

The site runs on pytest-django's live server, Discord is the local stand-in
(real HTTP on loopback), and the browser is Debian's chromium driven by
Playwright's sync API. Screenshots land in test-artifacts/browser/ at the
repository root (git-ignored) so a human can look at the pages.
"""

import re
import shutil
from pathlib import Path

import pytest
from django.db import connections

from connectors.config import config_keys_set, config_update, config_values
from connectors.models import ConnectedAccount

SERVICE_ID = "appmixer:discord"
CHROMIUM = shutil.which("chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"
TIMEOUT_MS = 15_000

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="Debian's chromium is not installed (apt-get install chromium); CI installs it",
    ),
]


@pytest.fixture
def page(monkeypatch):
    """A fresh Chromium page. The sync API runs an event loop in this thread,
    so Django's ORM must be told the thread is still safe for it."""
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            context.set_default_timeout(TIMEOUT_MS)
            context.set_default_navigation_timeout(TIMEOUT_MS)
            yield context.new_page()
            context.close()
        finally:
            # While Playwright's loop runs, Django keeps separate, context-local
            # connections; left open, one keeps PostgreSQL from dropping the
            # test database at the end of the session.
            connections.close_all()
            browser.close()


@pytest.fixture
def site(live_server, standin, settings, transactional_db):
    settings.PUBLIC_BASE_URL = live_server.url
    return live_server.url


def shot(page, name):
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_operator_saves_the_discord_credentials_in_the_admin(site, standin, page, django_user_model):
    from playwright.sync_api import expect

    # The stand-in fixture stored the credentials; the operator must type them.
    config_update(service_id=SERVICE_ID, clear=["clientId", "clientSecret", "botToken"])
    assert not {"clientId", "clientSecret", "botToken"} & config_keys_set(SERVICE_ID)
    django_user_model.objects.create_superuser("opal", "opal@example.com", "pw-opal-123")
    app = standin.app

    page.goto(f"{site}/admin/")
    page.wait_for_url(re.compile(r"/admin/login/"))
    page.fill("input[name=username]", "opal")
    page.fill("input[name=password]", "pw-opal-123")
    page.click("input[type=submit]")
    page.wait_for_url(f"{site}/admin/")

    page.get_by_role("link", name=re.compile(r"Connector configurations", re.I)).first.click()
    page.wait_for_url(re.compile(r"/admin/connectors/connectorconfig/$"))
    existing = page.get_by_role("link", name=SERVICE_ID, exact=True)
    if existing.count():
        existing.first.click()
        page.wait_for_url(re.compile(r"/admin/connectors/connectorconfig/\d+/change/$"))
    else:
        page.goto(f"{site}/admin/connectors/connectorconfig/add/?service_id={SERVICE_ID}")
        page.select_option("select[name=service_id]", SERVICE_ID)

    page.fill("input[name=clientId]", app.client_id)
    page.fill("input[name=clientSecret]", app.client_secret)
    page.fill("input[name=botToken]", app.bot_token)
    page.click("input[name=_continue]")
    page.wait_for_url(re.compile(r"/admin/connectors/connectorconfig/\d+/change/$"))

    expect(page.locator("ul.messagelist li.success")).to_contain_text("successfully")
    expect(page.locator("#redirect-url")).to_have_value(f"{site}/auth/discord/callback")
    html = page.content()
    assert app.client_secret not in html
    assert app.bot_token not in html
    shot(page, "01-admin-connector-saved")

    values = config_values(SERVICE_ID)
    assert values["clientId"] == app.client_id
    assert values["clientSecret"] == app.client_secret
    assert values["botToken"] == app.bot_token


def test_end_user_connects_and_disconnects_a_discord_account(site, standin, page, django_user_model):
    from playwright.sync_api import expect

    django_user_model.objects.create_user("carol", password="pw-carol-123")

    page.goto(f"{site}/accounts/login/")
    page.fill("input[name=username]", "carol")
    page.fill("input[name=password]", "pw-carol-123")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{site}/accounts/")
    expect(page.get_by_text("No account connected yet")).to_be_visible()

    page.get_by_role("link", name="Connect account").click()
    page.wait_for_url(re.compile("^" + re.escape(standin.authorize_url)))
    expect(page.get_by_role("button", name="Authorize")).to_be_visible()
    expect(page.get_by_role("button", name="Cancel")).to_be_visible()
    guild = page.locator("select[name=guild_id]")
    expect(guild).to_be_visible()
    guild.select_option(label="Stand-in User's server")
    shot(page, "02-standin-consent")

    page.get_by_role("button", name="Authorize").click()
    page.wait_for_url(f"{site}/accounts/")
    account_card = page.locator(".card.account")
    expect(account_card).to_have_count(1)
    expect(account_card).to_contain_text("Stand-in User")
    expect(account_card).to_contain_text("Stand-in User's server")
    expect(page.locator("ul.messages li.success")).to_contain_text("Connected Discord account Stand-in User")
    shot(page, "03-accounts-connected")

    account = ConnectedAccount.objects.get()
    assert account.servers.get().name == "Stand-in User's server"
    assert account.access_token not in page.content()

    account_card.get_by_role("button", name="Disconnect").click()
    page.wait_for_url(f"{site}/accounts/")
    expect(page.locator("ul.messages li")).to_contain_text("Disconnected")
    expect(page.locator(".card.account")).to_have_count(0)
    expect(page.get_by_text("No account connected yet")).to_be_visible()
    shot(page, "04-accounts-disconnected")

    assert not ConnectedAccount.objects.exists()
    assert standin.count("revoke") == 1
