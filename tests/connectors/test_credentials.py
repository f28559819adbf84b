"""Test credentials: each check's result against a faked Discord, called
directly and through the admin's button."""

import base64
import json
from pathlib import Path
from urllib.parse import parse_qs

import pytest
import requests
import responses
from django.test import Client

from connectors.discord.credentials import RETRY_HINT
from connectors.registry import registry
from tests.conftest import BOT_TOKEN, CLIENT_ID, CLIENT_SECRET, SERVICE_ID
from tests.helpers import assert_no_secret, config_admin_url, grant

FIXTURES = Path(__file__).parent / "discord" / "fixtures"
API = "https://discord.com/api/v10"
BOT_USER = f"{API}/users/@me"
TOKEN = f"{API}/oauth2/token"
APPLICATION = f"{API}/oauth2/applications/@me"

ALL_CHECKS = [
    "Bot token",
    "Client ID and secret",
    "Bot belongs to this client ID",
    "Redirect URL registered",
    "Public Bot on",
    "Requires OAuth2 Code Grant on",
    "Server Members Intent on",
    "Public key",
    "Events URL",
]
# Information, not failures: events are optional.
EVENT_CHECKS = {"Public key", "Events URL"}


def payload(name, **changes):
    return {**json.loads((FIXTURES / f"{name}.json").read_text()), **changes}


def check(values):
    return registry.get(SERVICE_ID).check_credentials(values)


def by_name(results):
    return {result.name: result for result in results}


def failed(results):
    return [result.name for result in results if not result.ok]


@pytest.fixture
def discord(settings):
    """Discord set up as the guide says; a test replaces one answer to break one thing."""
    assert settings.CONNECTORS["discord"]["API_BASE_URL"] == API
    with responses.RequestsMock() as mock:
        mock.get(BOT_USER, json=payload("bot_user"))
        mock.post(TOKEN, json=payload("client_credentials_token"))
        mock.get(APPLICATION, json=payload("application"))
        yield mock


def calls_to(mock, url):
    return [call for call in mock.calls if call.request.url == url]


# The checks


def test_every_check_passes_when_discord_is_set_up_as_the_guide_says(discord, discord_values):
    results = check(discord_values)

    assert [result.name for result in results] == ALL_CHECKS
    assert failed(results) == []
    assert all(result.hint == "" for result in results if result.name not in EVENT_CHECKS)
    assert by_name(results)["Bot token"].detail == (
        "Accepted: the bot is Backoffice Bot (987654321098765432)."
    )


def test_the_checks_authenticate_as_discord_asks(discord, discord_values):
    check(discord_values)

    for call in discord.calls:
        assert call.request.headers["User-Agent"].startswith("DiscordBot (")
    (bot_user,) = calls_to(discord, BOT_USER)
    assert bot_user.request.headers["Authorization"] == f"Bot {BOT_TOKEN}"
    (application,) = calls_to(discord, APPLICATION)
    assert application.request.headers["Authorization"] == f"Bot {BOT_TOKEN}"
    (token,) = calls_to(discord, TOKEN)
    basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    assert token.request.headers["Authorization"] == f"Basic {basic}"
    assert token.request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    form = parse_qs(token.request.body)
    assert form["grant_type"] == ["client_credentials"]
    assert form["scope"] == ["identify"]
    assert CLIENT_SECRET not in token.request.body


def test_the_members_intent_of_a_verified_app_counts_too(discord, discord_values):
    discord.replace(responses.GET, APPLICATION, json=payload("application", flags=1 << 14))

    assert failed(check(discord_values)) == []


def test_a_refused_bot_token_fails_its_check_and_leaves_the_portal_unchecked(discord, discord_values):
    discord.replace(responses.GET, BOT_USER, status=401, json={"message": "401: Unauthorized", "code": 0})
    discord.assert_all_requests_are_fired = False

    results = by_name(check(discord_values))

    assert list(results) == ["Bot token", "Client ID and secret", "Portal settings"]
    assert not results["Bot token"].ok
    assert "Discord refused the credentials (HTTP 401" in results["Bot token"].detail
    assert "Reset the token" in results["Bot token"].hint
    assert results["Client ID and secret"].ok
    assert not results["Portal settings"].ok
    assert results["Portal settings"].detail.startswith("Not checked")
    assert results["Portal settings"].hint == "Fix the bot token first."
    assert calls_to(discord, APPLICATION) == []


def test_a_refused_client_secret_fails_its_check_with_a_hint(discord, discord_values):
    discord.replace(responses.POST, TOKEN, status=401, json={"error": "invalid_client"})

    results = by_name(check(discord_values))

    assert failed(results.values()) == ["Client ID and secret"]
    assert "invalid_client" in results["Client ID and secret"].detail
    assert "reset the Client Secret" in results["Client ID and secret"].hint


@pytest.mark.parametrize(
    "application, name, hint",
    [
        ({"id": "999999999999999999"}, "Bot belongs to this client ID", "from the same application"),
        (
            {"redirect_uris": ["https://elsewhere.example.com/callback"]},
            "Redirect URL registered",
            "OAuth2 → Redirects",
        ),
        ({"bot_public": False}, "Public Bot on", "Bot → Public Bot"),
        ({"bot_require_code_grant": False}, "Requires OAuth2 Code Grant on", "Requires OAuth2 Code Grant"),
        ({"flags": 0}, "Server Members Intent on", "Server Members Intent"),
    ],
)
def test_each_portal_setting_that_is_off_fails_on_its_own(discord, discord_values, application, name, hint):
    discord.replace(responses.GET, APPLICATION, json=payload("application", **application))

    results = check(discord_values)

    assert failed(results) == [name]
    assert hint in by_name(results)[name].hint


def test_the_redirect_check_names_the_url_to_register(discord, discord_values):
    discord.replace(responses.GET, APPLICATION, json=payload("application", redirect_uris=[]))

    result = by_name(check(discord_values))["Redirect URL registered"]

    assert result.detail == (
        "https://backoffice.example.com/auth/discord/callback is not among the application's redirects."
    )


@pytest.mark.parametrize(
    "method, url, name",
    [
        (responses.GET, BOT_USER, "Bot token"),
        (responses.POST, TOKEN, "Client ID and secret"),
        (responses.GET, APPLICATION, "Portal settings"),
    ],
)
@pytest.mark.parametrize(
    "answer",
    [{"status": 503, "json": {"message": "Service Unavailable"}}, {"body": requests.Timeout()}],
    ids=["503", "timeout"],
)
def test_an_outage_says_to_try_again(discord, discord_values, method, url, name, answer):
    discord.replace(method, url, **answer)
    discord.assert_all_requests_are_fired = False

    results = by_name(check(discord_values))

    assert not results[name].ok
    assert results[name].hint == RETRY_HINT
    assert "try again" in results[name].hint


def test_values_not_set_fail_without_asking_discord(db):
    with responses.RequestsMock() as discord:
        results = by_name(check({}))

    assert len(discord.calls) == 0
    assert not any(result.ok for result in results.values())
    assert results["Bot token"].detail == "Not set."
    assert results["Client ID and secret"].detail == "Not set."


# Through the admin's button


def test_the_button_shows_a_row_per_check_and_no_secret(admin_client, configured, discord):
    page = admin_client.post(config_admin_url("test_credentials"))

    html = page.content.decode()
    assert page.status_code == 200
    assert "All 9 checks passed." in html
    for name in ALL_CHECKS:
        assert f'<th scope="row">{name}</th>' in html
    assert html.count('<span title="passed">✓</span>') == 9
    assert "Accepted: the bot is Backoffice Bot (987654321098765432)." in html
    assert f'href="{config_admin_url("change")}"' in html
    assert_no_secret(html)


def test_the_button_shows_failures_with_their_hints(admin_client, configured, discord):
    discord.replace(
        responses.GET, APPLICATION, json=payload("application", bot_public=False, flags=0)
    )

    html = admin_client.post(config_admin_url("test_credentials")).content.decode()

    assert "2 of 9 checks failed." in html
    assert html.count('<span title="failed">✗</span>') == 2
    assert "Turn on Bot → Public Bot in the Developer Portal." in html
    assert "Server Members Intent in the Developer Portal." in html
    assert_no_secret(html)


def test_the_button_after_an_outage_says_to_try_again(admin_client, configured, discord):
    discord.replace(responses.GET, BOT_USER, body=requests.Timeout())
    discord.assert_all_requests_are_fired = False

    html = admin_client.post(config_admin_url("test_credentials")).content.decode()

    assert "Discord did not answer in time." in html
    assert RETRY_HINT in html
    assert_no_secret(html)


def test_the_button_only_answers_a_post(admin_client, configured):
    with responses.RequestsMock() as discord:
        assert admin_client.get(config_admin_url("test_credentials")).status_code == 405
    assert len(discord.calls) == 0


def test_the_button_needs_the_change_permission(client, django_user_model, configured):
    user = django_user_model.objects.create_user("staff", is_staff=True)
    client.force_login(user)
    grant(user, "view_connectorconfig")

    with responses.RequestsMock() as discord:
        assert client.post(config_admin_url("test_credentials")).status_code == 403
    assert len(discord.calls) == 0


def test_the_button_sends_people_who_are_not_staff_to_the_login(client, django_user_model, configured):
    client.force_login(django_user_model.objects.create_user("ada"))

    with responses.RequestsMock() as discord:
        page = client.post(config_admin_url("test_credentials"))

    assert page.status_code == 302
    assert page["Location"].startswith("/admin/login/?next=")
    assert len(discord.calls) == 0


def test_the_button_refuses_a_post_without_the_csrf_token(configured, admin_user):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(admin_user)

    with responses.RequestsMock() as discord:
        assert browser.post(config_admin_url("test_credentials")).status_code == 403
    assert len(discord.calls) == 0


KEY = "a1" * 32


def test_the_public_key_must_be_the_applications_and_is_optional(discord, discord_values):
    assert by_name(check(discord_values))["Public key"].hint.startswith("To take events, copy")
    discord.replace(responses.GET, APPLICATION, json=payload("application", verify_key=KEY))
    assert by_name(check({**discord_values, "publicKey": KEY}))["Public key"].ok
    wrong = by_name(check({**discord_values, "publicKey": "b2" * 32}))["Public key"]
    assert not wrong.ok
    assert wrong.detail == "Not the public key Discord shows for this application."
    assert "General Information" in wrong.hint


def test_the_events_url_is_information_never_a_failure(discord, discord_values):
    ours = "https://backoffice.example.com/webhooks/discord/events"
    none = by_name(check(discord_values))["Events URL"]
    assert none.ok and none.hint == f"Optional: register {ours} under Webhooks."
    discord.replace(responses.GET, APPLICATION, json=payload("application", event_webhooks_url=ours))
    assert by_name(check(discord_values))["Events URL"].detail == f"Discord sends events to {ours}."
    elsewhere = "https://old.example.com/events"
    discord.replace(responses.GET, APPLICATION, json=payload("application", event_webhooks_url=elsewhere))
    result = by_name(check(discord_values))["Events URL"]
    assert result.ok and elsewhere in result.detail and ours in result.hint
