"""The operator's and the end user's paths through real Chromium.

The site runs on pytest-django's live server, Discord is the local stand-in
(real HTTP on loopback), and the browser is Debian's chromium driven by
Playwright's sync API. Screenshots land in test-artifacts/browser/ at the
repository root (git-ignored) so a human can look at the pages.

Every test fails on a Content-Security-Policy violation (or a
Permissions-Policy header Chromium cannot read): the page fixture collects
what Chromium reports in the console or as an uncaught page error, and
asserts at the end that nothing was refused.
"""

import base64
import re
import shutil
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connections

from connectors.config import config_keys_set, config_update, config_values
from connectors.models import ConnectedAccount

SERVICE_ID = "appmixer:discord"
CHROMIUM = shutil.which("chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"
TIMEOUT_MS = 15_000
# What Chromium says when the Content-Security-Policy blocks something, or
# when it cannot make sense of the Permissions-Policy header.
POLICY_ERROR = re.compile(r"Content Security Policy|Refused to|Permissions-Policy", re.I)
# A 1×1 PNG in Discord's blurple: the avatar the CDN answers in these tests.
AVATAR_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGOISP0EAALIAbDfJSJbAAAAAElFTkSuQmCC"
)

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
            # Avatars come from Discord's CDN; the tests answer for it, off the network.
            context.route(
                f"{django_settings.CONNECTORS['discord']['CDN_URL']}/**",
                lambda route: route.fulfill(status=200, content_type="image/png", body=AVATAR_PNG),
            )
            page = context.new_page()
            refused = []
            page.on("console", lambda message: refused.append(f"console: {message.text}"))
            page.on("pageerror", lambda error: refused.append(f"page error: {error}"))
            yield page
            page.wait_for_load_state()
            refused = [text for text in refused if POLICY_ERROR.search(text)]
            assert not refused, "a security policy refused something:\n" + "\n".join(refused)
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
    existing = page.locator("#result_list th a", has_text=SERVICE_ID)
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
    # The avatar from Discord's CDN got past img-src, and site.css laid out the card.
    avatar = account_card.locator("img.avatar")
    expect(avatar).to_have_attribute("src", re.compile("^" + re.escape(django_settings.CONNECTORS["discord"]["CDN_URL"])))
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=avatar.element_handle())
    expect(account_card.locator(".account-row")).to_have_css("display", "flex")
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


def log_in(page, site, username, password):
    page.goto(f"{site}/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{site}/accounts/")


def test_operator_changes_the_bot_permissions_and_tests_the_credentials(site, standin, page, django_user_model):
    from playwright.sync_api import expect

    django_user_model.objects.create_superuser("otto", "otto@example.com", "pw-otto-123")
    log_in(page, site, "otto", "pw-otto-123")
    page.get_by_role("link", name="Admin").click()
    page.get_by_role("link", name=re.compile(r"Connector configurations", re.I)).first.click()
    page.locator("#result_list th a", has_text=SERVICE_ID).click()
    page.wait_for_url(re.compile(r"/admin/connectors/connectorconfig/\d+/change/$"))

    # Our admin.css sizes the redirect URL box and lines up the checklist.
    expect(page.locator("#redirect-url")).not_to_have_css("max-width", "none")
    expect(page.locator(".setup-checklist")).to_have_css("margin-left", "0px")
    moderate = page.get_by_label("Moderate Members")
    expect(moderate).not_to_be_checked()
    moderate.check()
    page.get_by_label("Manage Channels").uncheck()
    # The Test credentials block sits below the floated form, its heading one line
    # tall (it once stretched up behind the form, showing as blue bands).
    heading = page.locator("#test-credentials h2").bounding_box()
    form = page.locator("#connectorconfig_form").bounding_box()
    assert heading["height"] < 60 and heading["y"] >= form["y"] + form["height"]
    shot(page, "05-admin-change-page")
    page.click("input[name=_continue]")
    page.wait_for_url(re.compile(r"/admin/connectors/connectorconfig/\d+/change/$"))
    expect(page.locator("ul.messagelist li.success")).to_contain_text("successfully")
    expect(page.get_by_label("Moderate Members")).to_be_checked()
    expect(page.get_by_label("Manage Channels")).not_to_be_checked()
    permissions = int(config_values(SERVICE_ID)["permissions"])
    assert permissions & 1 << 40 and not permissions & 1 << 4

    page.get_by_role("button", name="Test credentials").click()
    page.wait_for_url(re.compile(r"/test-credentials/$"))
    expect(page.locator("#credential-checks tbody tr").first).to_be_visible()
    # admin.css stretches the table across its box.
    page.wait_for_function(
        "() => { const t = document.getElementById('credential-checks');"
        " return t.offsetWidth >= t.parentElement.clientWidth - 1; }"
    )
    shot(page, "06-admin-test-credentials")


def fits(page):
    """Nothing is wider than the 1280 px window, nor the list than its box (which would scroll)."""
    return page.evaluate(
        "() => [document.documentElement, ...document.querySelectorAll('#changelist .results')]"
        ".every(box => box.scrollWidth <= box.clientWidth)"
    )


def test_operator_reads_the_lists_and_an_account_at_1280_px(site, standin, page, django_user_model):
    from playwright.sync_api import expect

    django_user_model.objects.create_superuser("olga", "olga@example.com", "pw-olga-123")
    log_in(page, site, "olga", "pw-olga-123")
    # The operator connects an account of her own, so that the lists have a row.
    page.get_by_role("link", name="Connect account").click()
    page.wait_for_url(re.compile("^" + re.escape(standin.authorize_url)))
    page.get_by_role("button", name="Authorize").click()
    page.wait_for_url(f"{site}/accounts/")
    expect(page.locator(".card.account")).to_contain_text("bot may: ")
    ConnectedAccount.objects.update(
        last_error="Discord answered 503 Service Unavailable " + "while refreshing the token " * 8
    )

    page.goto(f"{site}/admin/connectors/connectorconfig/")
    expect(page.locator("#site-name")).to_have_text("Backoffice")
    cell = page.locator("td.field-keys_set").first
    expect(cell).to_contain_text("✓ scopes (default)")
    # No mark is left at the end of a line without its key: each key's span is on one line.
    lines = cell.locator("span").evaluate_all("spans => spans.map(s => s.getClientRects().length)")
    assert len(lines) >= 3 and set(lines) == {1}
    assert fits(page)
    shot(page, "07-admin-configuration-list")

    page.goto(f"{site}/admin/connectors/connectedaccount/")
    expect(page.locator("#result_list tbody tr")).to_have_count(1)
    assert fits(page)
    shot(page, "08-admin-accounts-list")

    page.locator("#result_list tbody tr a").first.click()
    page.wait_for_url(re.compile(r"/admin/connectors/connectedaccount/\d+/change/$"))
    expect(page.locator("td.field-permission_names").first).to_contain_text("Send Messages")
    shot(page, "09-admin-account")


def test_logging_in_on_the_way_to_connect_goes_on_to_discord(site, standin, page, django_user_model):
    """The login form's redirect chain ends at Discord's consent page on another origin."""
    from playwright.sync_api import expect

    django_user_model.objects.create_user("lena", password="pw-lena-123")
    page.goto(f"{site}/auth/discord/connect")
    page.wait_for_url(re.compile(r"/accounts/login/\?next="))
    page.fill("input[name=username]", "lena")
    page.fill("input[name=password]", "pw-lena-123")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile("^" + re.escape(standin.authorize_url)))
    expect(page.get_by_role("button", name="Authorize")).to_be_visible()


def test_our_error_pages_are_styled_under_the_policy(site, standin, page, django_user_model, monkeypatch):
    from playwright.sync_api import expect

    django_user_model.objects.create_user("erin", password="pw-erin-123")
    log_in(page, site, "erin", "pw-erin-123")

    answer = page.goto(f"{site}/no/such/page/")
    assert answer.status == 404
    expect(page.get_by_role("heading", name="Page not found")).to_be_visible()
    expect(page.locator("header")).to_have_css("background-color", "rgb(255, 255, 255)")
    shot(page, "07-error-404")

    config_update(service_id=SERVICE_ID, clear=["clientSecret"])
    page.goto(f"{site}/accounts/")
    expect(page.get_by_text("the operator of this site has not set it up")).to_be_visible()
    expect(page.get_by_role("link", name="Connect account")).to_have_count(0)
    shot(page, "08-accounts-not-configured")
    answer = page.goto(f"{site}/auth/discord/connect")
    assert answer.status == 503
    expect(page.get_by_role("heading", name="Discord is not set up yet")).to_be_visible()
    expect(page.locator(".card")).to_have_css("border-radius", "8px")
    shot(page, "08-error-503-not-configured")

    page.goto(f"{site}/accounts/")
    page.context.clear_cookies(name="csrftoken")
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("heading", name="This form has expired")).to_be_visible()
    shot(page, "09-error-403-csrf")

    def broken(*args, **kwargs):
        raise RuntimeError("forced failure for the 500 page")

    monkeypatch.setattr("connectors.views.pause_notices", broken)
    answer = page.goto(f"{site}/accounts/")
    assert answer.status == 500
    expect(page.get_by_role("heading", name="Something went wrong")).to_be_visible()
    expect(page.locator(".card")).to_have_css("border-radius", "8px")
    shot(page, "10-error-500")


def test_a_newcomer_signs_up_opens_a_disconnect_address_and_signs_out(site, page, settings):
    from playwright.sync_api import expect

    settings.SIGNUP_ENABLED = True
    page.goto(f"{site}/accounts/login/")
    page.get_by_role("link", name="Sign up").click()
    page.fill("input[name=username]", "newt")
    page.fill("input[name=password1]", "a-long-pass-phrase-42")
    page.fill("input[name=password2]", "a-long-pass-phrase-42")
    shot(page, "11-sign-up")
    page.get_by_role("button", name="Sign up").click()
    page.wait_for_url(f"{site}/accounts/")
    expect(page.get_by_text("Welcome, newt")).to_be_visible()

    answer = page.goto(f"{site}/accounts/1/disconnect")
    assert answer.status == 405
    expect(page.get_by_role("heading", name="This address is not a page")).to_be_visible()
    expect(page.locator(".card")).to_have_css("border-radius", "8px")
    shot(page, "12-error-405")

    page.get_by_role("link", name="Your accounts").click()
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(f"{site}/accounts/login/")
    expect(page.get_by_text("You are signed out.")).to_be_visible()
    shot(page, "13-signed-out")
