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
    expect(cell).to_contain_text("✓ publicKey")
    # Every mark stays beside its key: each key is one box on one line.
    boxes = cell.locator("span").evaluate_all(
        "spans => spans.map(s => [s.getClientRects().length, s.getBoundingClientRect().height])"
    )
    line = boxes[0][1]
    assert all(count == 1 and height == line for count, height in boxes)
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


def test_end_user_with_discord_and_slack_configured_connects_a_slack_workspace(
    site, standin, slack_standin, page, django_user_model
):
    from playwright.sync_api import expect

    slack_standin.app.redirect_uris = [f"{site}/auth/slack/callback"]
    django_user_model.objects.create_user("sami", password="pw-sami-123")
    log_in(page, site, "sami", "pw-sami-123")
    expect(page.get_by_role("link", name="Connect Discord account")).to_be_visible()
    expect(page.get_by_role("link", name="Connect Slack account")).to_be_visible()

    page.get_by_role("link", name="Connect Slack account").click()
    page.wait_for_url(re.compile("^" + re.escape(slack_standin.authorize_url)))
    expect(page.get_by_text("This is not Slack.")).to_be_visible()
    expect(page.get_by_role("button", name="Cancel")).to_be_visible()
    page.get_by_label("Workspace").select_option(label="Stand-in Lab")
    shot(page, "14-slack-consent")

    page.get_by_role("button", name="Allow").click()
    page.wait_for_url(f"{site}/accounts/")
    card = page.locator(".card.account")
    expect(card).to_have_count(1)
    expect(card).to_contain_text("Stand-in Lab")
    expect(card).to_contain_text("the app may: chat:write, channels:read")
    expect(page.locator("ul.messages li.success")).to_contain_text(
        "Connected Slack account U0STANDIN01 in Stand-in Lab"
    )
    shot(page, "15-accounts-slack-connected")

    account = ConnectedAccount.objects.get()
    assert account.service_id == "appmixer:slack" and account.servers.get().server_id == "T0STANDIN02"
    assert account.access_token not in page.content()


def test_end_user_sends_a_test_message_until_the_bot_is_removed(site, standin, page, django_user_model):
    from playwright.sync_api import expect

    django_user_model.objects.create_user("tess", password="pw-tess-123")
    log_in(page, site, "tess", "pw-tess-123")
    page.get_by_role("link", name="Connect account").click()
    page.wait_for_url(re.compile("^" + re.escape(standin.authorize_url)))
    page.get_by_role("button", name="Authorize").click()
    page.wait_for_url(f"{site}/accounts/")
    server = ConnectedAccount.objects.get().servers.get()
    general = next(channel.id for channel in standin.channels(server.server_id) if channel.name == "general")

    page.get_by_role("button", name="Send a test message").click()
    page.wait_for_url(f"{site}/accounts/")
    expect(page.locator("ul.messages li.success")).to_have_text(
        "Sent a test message to #general in Stand-in User's server."
    )
    (message,) = standin.messages(general)
    assert "tess" in message["content"]
    expect(page.locator(".access-lost")).to_have_count(0)
    shot(page, "16-test-message-sent")

    standin.remove_bot(server.server_id)
    page.get_by_role("button", name="Send a test message").click()
    page.wait_for_url(f"{site}/accounts/")
    expect(page.locator("ul.messages li.error")).to_contain_text(
        "No test message was sent to Stand-in User's server: Discord: Missing Access"
    )
    lost = page.locator(".access-lost")
    expect(lost).to_contain_text("No access")
    expect(lost.get_by_role("link", name="Add the bot again")).to_be_visible()
    assert len(standin.messages(general)) == 1
    assert page.evaluate("() => document.documentElement.scrollWidth <= document.documentElement.clientWidth")
    shot(page, "17-test-message-no-access")

    page.set_viewport_size({"width": 400, "height": 900})
    shot(page, "18-test-message-no-access-400px")
    assert page.evaluate("() => document.documentElement.scrollWidth <= document.documentElement.clientWidth")


# Pages and page states added with the brake on mass marking, pending
# revocations, refused client credentials and our own outage page; each is
# shot at 1280 px and at 400 px, and must fit at both.

NARROW = 400
# What a person presses or types into: it must lie inside the box it belongs to.
CONTROLS = "button, a.button, input:not([type=hidden]), select"


def controls_outside(page, boxes):
    """The visible controls that stick out of their box (matched by ``boxes``), described; [] when all fit."""
    return page.evaluate(
        """([boxes, controls]) => {
            const out = [];
            for (const box of document.querySelectorAll(boxes)) {
                const b = box.getBoundingClientRect();
                for (const el of box.querySelectorAll(controls)) {
                    if (!el.getClientRects().length) continue;
                    const r = el.getBoundingClientRect();
                    if (r.left < b.left - 0.5 || r.right > b.right + 0.5 || r.top < b.top - 0.5 || r.bottom > b.bottom + 0.5)
                        out.push(`${el.outerHTML.slice(0, 80)} sticks out of .${box.className} by `
                                 + `${Math.max(b.left - r.left, r.right - b.right, b.top - r.top, r.bottom - b.bottom)} px`);
                }
            }
            return out;
        }""",
        [boxes, CONTROLS],
    )


def overflows(page, lists=True):
    """What is wider than the window (and, with ``lists``, an admin list wider than its box), described;
    [] when all fit."""
    return page.evaluate(
        "lists => [document.documentElement, ...(lists ? document.querySelectorAll('#changelist .results') : [])]"
        ".filter(box => box.scrollWidth > box.clientWidth)"
        ".map(box => `${box.tagName}.${box.className}: ${box.scrollWidth} px in ${box.clientWidth} px`)",
        lists,
    )


def shots(page, name, boxes):
    """Screenshots at 1280 px and at 400 px (``name``-400px), the page fitting each and every control
    inside its box; the window is 1280 px wide again afterwards.

    At 1280 px an admin list fits its box; at 400 px the admin lets a list of
    several columns scroll sideways in its own box (responsive.css), as long
    as the page itself does not.
    """
    for width, suffix in ((1280, ""), (NARROW, f"-{NARROW}px")):
        page.set_viewport_size({"width": width, "height": 900})
        shot(page, name + suffix)
        wide = overflows(page, lists=width > NARROW)
        assert not wide, f"{name} at {width} px: {wide}"
        outside = controls_outside(page, boxes)
        assert not outside, f"{name} at {width} px: {outside}"
    page.set_viewport_size({"width": 1280, "height": 900})


def connect_in_browser(page, site, standin, link="Connect account"):
    """The signed-in person connects a Discord account at the stand-in; back on the accounts page."""
    page.get_by_role("link", name=link).click()
    page.wait_for_url(re.compile("^" + re.escape(standin.authorize_url)))
    page.get_by_role("button", name="Authorize").click()
    page.wait_for_url(f"{site}/accounts/")


def hold_mark(account):
    """What the brake on mass marking leaves when it holds back a refused refresh's mark."""
    from django.utils import timezone

    from connectors.models import HeldMark

    return HeldMark.objects.create(
        account=account, service_id=account.service_id, reason=account.connector.reconnect_reason,
        error="invalid_grant: the refresh token was refused", marked_by=ConnectedAccount.MarkedBy.REFRESH,
        held_at=timezone.now(),
    )


def test_an_account_whose_mark_the_brake_holds_is_being_checked(site, standin, page, django_user_model):
    from playwright.sync_api import expect

    django_user_model.objects.create_user("hugo", password="pw-hugo-123")
    log_in(page, site, "hugo", "pw-hugo-123")
    connect_in_browser(page, site, standin)
    account = ConnectedAccount.objects.get()
    hold_mark(account)

    page.goto(f"{site}/accounts/")
    card = page.locator(".card.account")
    expect(card.locator(".status")).to_have_text("Being checked")
    expect(card.locator(".status")).to_have_css("background-color", "rgb(221, 244, 255)")
    note = card.get_by_role("status")
    expect(note).to_contain_text("Discord refused many accounts at once")
    expect(note).to_contain_text("There is nothing to do for now.")
    # Nothing to press but Disconnect: the operator decides, not the person.
    expect(card.get_by_role("link", name="Reconnect")).to_have_count(0)
    expect(card.get_by_role("button", name="Disconnect")).to_be_visible()
    expect(card).not_to_contain_text("Needs reconnect")
    shots(page, "19-accounts-being-checked", ".card")
    account.refresh_from_db()
    assert account.status == ConnectedAccount.Status.ACTIVE


def test_operator_confirms_the_marks_the_brake_held_back(site, standin, page, django_user_model):
    from django.core import mail
    from playwright.sync_api import expect

    from connectors.models import HeldMark
    from tests.helpers import seed_account

    for name in ("ines", "jon"):
        user = django_user_model.objects.create_user(name, f"{name}@example.com", f"pw-{name}-123")
        hold_mark(seed_account(standin, user, expires_in=3600))
    django_user_model.objects.create_superuser("omar", "omar@example.com", "pw-omar-123")
    log_in(page, site, "omar", "pw-omar-123")

    page.goto(f"{site}/admin/connectors/connectedaccount/")
    banner = page.locator(".held-marks")
    expect(banner).to_have_count(1)
    expect(banner.locator(".errornote")).to_contain_text("2 accounts held back from needs-reconnect (Discord, since ")
    expect(banner.get_by_role("button", name="Confirm")).to_be_visible()
    expect(banner.get_by_role("button", name="Dismiss")).to_be_visible()
    expect(page.locator("#result_list tbody tr")).to_have_count(2)
    expect(page.locator("#result_list td.field-status")).to_have_text(["Active", "Active"])
    shots(page, "20-admin-held-marks", ".held-marks, #changelist .actions")

    banner.get_by_role("button", name="Confirm").click()
    page.wait_for_url(f"{site}/admin/connectors/connectedaccount/")
    expect(page.locator("ul.messagelist li.success")).to_have_text(
        "Discord: 2 account(s) marked needs reconnect; their users are told."
    )
    expect(page.locator(".held-marks")).to_have_count(0)
    expect(page.get_by_text("held back from needs-reconnect")).to_have_count(0)
    expect(page.locator("#result_list td.field-status")).to_have_text(["Needs reconnect", "Needs reconnect"])
    shots(page, "21-admin-held-marks-confirmed", "#changelist .actions")

    assert not HeldMark.objects.exists()
    assert set(ConnectedAccount.objects.values_list("status", flat=True)) == {ConnectedAccount.Status.NEEDS_RECONNECT}
    assert sorted(to for message in mail.outbox for to in message.to) == ["ines@example.com", "jon@example.com"]


def test_operator_reads_a_pending_revocation_and_revokes_it_again(site, standin, page, django_user_model):
    from playwright.sync_api import expect

    from connectors.flow import UNSTORED
    from connectors.models import PendingRevocation
    from connectors.registry import registry
    from connectors.revocations import grant_revoke_unstored
    from tests.helpers import standin_tokens

    # A grant we could not store, whose revocation Discord failed: kept, as the flow keeps it.
    tokens = standin_tokens(standin)
    standin.fail_next("revoke", 500)
    assert not grant_revoke_unstored(
        connector=registry.get(SERVICE_ID), tokens=tokens, uid=standin.logged_in.id, what=UNSTORED
    )
    row = PendingRevocation.objects.get()
    django_user_model.objects.create_superuser("pia", "pia@example.com", "pw-pia-123")
    log_in(page, site, "pia", "pw-pia-123")

    def no_token_shown():
        html = page.content()
        assert tokens["access_token"] not in html and tokens["refresh_token"] not in html

    page.goto(f"{site}/admin/")
    page.get_by_role("link", name="Pending revocations").click()
    page.wait_for_url(f"{site}/admin/connectors/pendingrevocation/")
    expect(page.get_by_role("heading", name="Pending revocations")).to_be_visible()
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first.locator(".field-grant")).to_have_text(f"Discord user {standin.logged_in.id}", use_inner_text=True)
    expect(rows.first.locator(".field-attempts")).to_have_text("1")
    expect(rows.first.locator(".field-created")).to_have_text(
        re.compile(r"UTC\s+gives up \d{4}-\d\d-\d\d \d\d:\d\d UTC$"), use_inner_text=True
    )
    no_token_shown()
    shots(page, "22-admin-pending-revocations", "#changelist .actions")

    rows.first.locator("a").first.click()
    page.wait_for_url(f"{site}/admin/connectors/pendingrevocation/{row.pk}/change/")
    # Read only: nothing to type, no Save; the tokens are not even on the form.
    expect(page.locator("#pendingrevocation_form input[type=text], #pendingrevocation_form textarea")).to_have_count(0)
    expect(page.locator("input[name=_save]")).to_have_count(0)
    expect(page.locator(".field-uid .readonly")).to_have_text(standin.logged_in.id)
    expect(page.locator(".field-last_error .readonly")).not_to_be_empty()
    no_token_shown()
    shots(page, "23-admin-pending-revocation", "#content-main")

    # Try again while Discord still fails: the row stays, with the attempt counted.
    page.goto(f"{site}/admin/connectors/pendingrevocation/")
    standin.fail_next("revoke", 500)
    page.locator("#result_list tbody input[name=_selected_action]").check()
    page.select_option("select[name=action]", label="Try to revoke again now")
    page.get_by_role("button", name="Go").click()
    page.wait_for_url(f"{site}/admin/connectors/pendingrevocation/")
    expect(page.locator("ul.messagelist li.warning")).to_contain_text(
        "still pending (Discord answered with a server error (HTTP 500); try again later)."
    )
    expect(page.locator("#result_list td.field-attempts")).to_have_text("2")
    no_token_shown()
    shots(page, "24-admin-pending-revocation-still-pending", "#changelist .actions")

    # And again once Discord answers: revoked, the row gone, the grant dead at Discord.
    page.locator("#result_list tbody input[name=_selected_action]").check()
    page.select_option("select[name=action]", label="Try to revoke again now")
    page.get_by_role("button", name="Go").click()
    page.wait_for_url(f"{site}/admin/connectors/pendingrevocation/")
    expect(page.locator("ul.messagelist li.success")).to_contain_text("revoked.")
    expect(page.locator("#result_list")).to_have_count(0)
    shots(page, "25-admin-pending-revocation-revoked", "#content-main")
    assert not PendingRevocation.objects.exists()
    assert not standin.access_token_valid(tokens["access_token"])
    assert not standin.refresh_token_valid(tokens["refresh_token"])


def test_operator_sees_that_discord_refused_the_client_credentials(site, standin, page, django_user_model):
    from playwright.sync_api import expect

    from connectors.config import credentials_refused_note
    from connectors.registry import registry

    words = "Discord refused the client credentials (HTTP 401, invalid_client)."
    assert credentials_refused_note(registry.get(SERVICE_ID), words)
    django_user_model.objects.create_superuser("quinn", "quinn@example.com", "pw-quinn-123")
    log_in(page, site, "quinn", "pw-quinn-123")

    page.goto(f"{site}/admin/connectors/connectorconfig/")
    cell = page.locator("#result_list tr", has_text=SERVICE_ID).locator(".field-service")
    refused = cell.locator(".refused")
    expect(refused).to_have_text(re.compile(r"^✗ credentials refused \d{4}-\d\d-\d\d \d\d:\d\d UTC$"))
    expect(refused).to_have_attribute("title", words)
    expect(refused).to_have_css("color", "rgb(186, 33, 33)")
    expect(cell).to_contain_text("Discord")
    shots(page, "26-admin-configuration-list-credentials-refused", "#changelist .actions")

    cell.get_by_role("link", name=SERVICE_ID).click()
    page.wait_for_url(re.compile(r"/admin/connectors/connectorconfig/\d+/change/$"))
    error = page.locator("ul.messagelist li.error")
    expect(error).to_have_count(1)
    expect(error).to_contain_text("Discord refused these client credentials at ")
    expect(error).to_contain_text(f"UTC: {words} No account was marked")
    expect(error).to_contain_text("Saving a new secret or a green Test credentials clears this.")
    shots(page, "27-admin-change-page-credentials-refused", "#content-main")


def test_a_dead_cache_gives_our_own_outage_page(site, standin, slack_standin, killable_cache, page, django_user_model):
    from playwright.sync_api import expect

    django_user_model.objects.create_user("ruth", password="pw-ruth-123")
    log_in(page, site, "ruth", "pw-ruth-123")
    page.get_by_role("link", name="Connect Discord account").click()
    page.wait_for_url(re.compile("^" + re.escape(standin.authorize_url)))
    expect(page.get_by_role("button", name="Authorize")).to_be_visible()
    # The cache dies while the person is at Discord; the callback needs it to pace the code exchange.
    killable_cache.kill()

    with page.expect_response(re.compile(re.escape(f"{site}/auth/discord/callback"))) as answer:
        page.get_by_role("button", name="Authorize").click()
    assert answer.value.status == 503
    assert answer.value.headers["retry-after"] == "10"
    expect(page.get_by_role("heading", name="Not available right now")).to_be_visible()
    card = page.locator(".card")
    expect(card).to_contain_text("This site cannot reach")
    expect(card).to_contain_text("The fault is on this site's side, not Discord's.")
    expect(card).to_contain_text("Please try again in 10 seconds.")
    expect(card).to_have_css("border-radius", "8px")
    shots(page, "28-error-503-own-outage", ".card")
    assert standin.count("token") == 0 and not ConnectedAccount.objects.exists()

    page.get_by_role("link", name="Back to your accounts").click()
    page.wait_for_url(f"{site}/accounts/")
    expect(page.get_by_text("No account connected yet")).to_be_visible()
