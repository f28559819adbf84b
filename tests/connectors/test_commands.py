"""The operator commands: what they print, how they exit, and that no secret
ever reaches the terminal."""

import base64
import getpass
import logging
import io
import json
from dataclasses import dataclass
from io import StringIO

import pytest
import responses
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.core.management.base import CommandError
from responses import matchers

from connectors.config import config_keys_set, config_values
from connectors.models import ConnectedAccount, ConnectorConfig, ConnectorValue
from tests.conftest import CLIENT_ID, SERVICE_ID
from tests.helpers import raw_values

# Secrets made of no words, so that any 5 characters of one found in the
# output is a leak, not a label ("Client secret", "Bot token") that happens
# to match.
CLIENT_SECRET = "Xk9mQ2vL7pR4tW8zN3bH6jF1cD5gS0aY"
BOT_TOKEN = "OTg3NjU0MzIxMDk4NzY1NDMy.Gq7Vx2.Rk4Jw9Zt3Nb8Lm1Hs6Pd0Fy5Cv"
NEW_SECRET = "Pz3Wq8Lm5Tx1Vb7Nc4Hk9Rj2Fd6Gs0Ya"
SECRETS = (CLIENT_SECRET, BOT_TOKEN, NEW_SECRET)

KEY_B, KEY_WRONG = Fernet.generate_key().decode(), Fernet.generate_key().decode()


@pytest.fixture
def discord_values():
    return {"clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET, "botToken": BOT_TOKEN}


def windows(text, size=5):
    return {text[i : i + size] for i in range(len(text) - size + 1)}


@dataclass
class Ran:
    out: str
    err: str
    error: CommandError | None

    @property
    def message(self):
        return str(self.error)


def run(*args):
    """Run a command; fail the test if anything it printed or raised holds part of a secret."""
    out, err, error = io.StringIO(), io.StringIO(), None
    try:
        call_command(*args, stdout=out, stderr=err)
    except CommandError as caught:
        error = caught
    ran = Ran(out.getvalue(), err.getvalue(), error)
    for text in (ran.out, ran.err, str(error or "")):
        for secret in SECRETS:
            assert not windows(secret) & windows(text), "part of a secret was printed"
    return ran


def succeeds(*args):
    ran = run(*args)
    assert ran.error is None, ran.message
    return ran


def fails(*args):
    ran = run(*args)
    assert ran.error is not None, "the command succeeded"
    assert ran.error.returncode != 0
    return ran


def stored():
    values = config_values(SERVICE_ID)
    return {key: values[key] for key in ("clientId", "clientSecret", "botToken") if key in values}


def redirect_url(settings):
    return f"{settings.PUBLIC_BASE_URL}/auth/discord/callback"


# configure_connector


def test_configure_sets_values_from_flags_and_environment(db, monkeypatch):
    monkeypatch.setenv("DISCORD_CLIENT_SECRET", CLIENT_SECRET)
    monkeypatch.setenv("DISCORD_BOT_TOKEN", f"Bot {BOT_TOKEN}\n")

    ran = succeeds(
        "configure_connector", SERVICE_ID,
        "--set", f"clientId={CLIENT_ID}",
        "--set-from-env", "clientSecret=DISCORD_CLIENT_SECRET",
        "--set-from-env", "botToken=DISCORD_BOT_TOKEN",
    )

    assert ran.out == "Updated appmixer:discord: clientId, clientSecret, botToken.\n"
    assert ran.err == ""
    assert stored() == {"clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET, "botToken": BOT_TOKEN}


def test_configure_with_the_same_values_changes_nothing(configured, monkeypatch):
    monkeypatch.setenv("DISCORD_CLIENT_SECRET", CLIENT_SECRET)
    ran = succeeds(
        "configure_connector", SERVICE_ID,
        "--set", f"clientId={CLIENT_ID}",
        "--set-from-env", "clientSecret=DISCORD_CLIENT_SECRET",
    )
    assert ran.out == "No change.\n"


def test_a_secret_on_the_command_line_works_but_warns_about_shell_history(configured):
    ran = succeeds("configure_connector", SERVICE_ID, "--set", f"clientSecret={NEW_SECRET}")

    assert ran.out == "Updated appmixer:discord: clientSecret.\n"
    assert "clientSecret" in ran.err and "shell history" in ran.err
    assert "--set-from-env" in ran.err and "--set-from-stdin" in ran.err
    assert stored()["clientSecret"] == NEW_SECRET


def test_a_client_id_on_the_command_line_does_not_warn(db):
    ran = succeeds("configure_connector", SERVICE_ID, "--set", f"clientId={CLIENT_ID}")
    assert ran.err == ""


def test_a_missing_environment_variable_is_named_and_nothing_changes(configured, monkeypatch):
    monkeypatch.delenv("DISCORD_BOT_TOKEN", raising=False)
    before = raw_values()

    ran = fails(
        "configure_connector", SERVICE_ID,
        "--set", "clientId=876543210987654321",
        "--set-from-env", "botToken=DISCORD_BOT_TOKEN",
    )

    assert "DISCORD_BOT_TOKEN" in ran.message
    assert raw_values() == before


@pytest.mark.parametrize("line_end", ["\n", "\r\n", ""])
def test_a_value_from_standard_input_loses_its_line_end(db, monkeypatch, line_end):
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{BOT_TOKEN}{line_end}"))
    ran = succeeds("configure_connector", SERVICE_ID, "--set-from-stdin", "botToken")
    assert ran.out == "Updated appmixer:discord: botToken.\n"
    assert ran.err == ""
    assert stored() == {"botToken": BOT_TOKEN}


def test_standard_input_is_read_for_one_value_only(db, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{CLIENT_SECRET}\n{BOT_TOKEN}\n"))
    succeeds("configure_connector", SERVICE_ID, "--set-from-stdin", "clientSecret")
    assert stored() == {"clientSecret": CLIENT_SECRET}


def test_empty_standard_input_is_refused(db, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    ran = fails("configure_connector", SERVICE_ID, "--set-from-stdin", "clientSecret")
    assert "standard input is empty" in ran.message
    assert not ConnectorValue.objects.exists()


def test_clear_removes_a_value(configured):
    ran = succeeds("configure_connector", SERVICE_ID, "--clear", "botToken")
    assert ran.out == "Updated appmixer:discord: botToken.\n"
    assert config_keys_set(SERVICE_ID) == {"clientId", "clientSecret"}
    assert succeeds("configure_connector", SERVICE_ID, "--clear", "botToken").out == "No change.\n"


def test_invalid_values_are_each_named_and_nothing_changes(configured, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("two words\n"))
    before = raw_values()

    ran = fails(
        "configure_connector", SERVICE_ID,
        "--set", "clientId=12345",
        "--set-from-stdin", "clientSecret",
        "--set", f"botToken={BOT_TOKEN}x",
    )

    assert "Nothing was changed" in ran.message
    assert "clientId: must be a Discord application ID: 17 to 20 digits" in ran.message
    assert "clientSecret: must not contain spaces" in ran.message
    assert "botToken" not in ran.message
    assert raw_values() == before
    assert ran.out == ""


def test_an_invalid_value_on_a_fresh_connector_stores_nothing(db):
    fails(
        "configure_connector", SERVICE_ID,
        "--set", f"clientId={CLIENT_ID}",
        "--set", "botToken=Bot two words",
    )
    assert not ConnectorConfig.objects.exists()
    assert not ConnectorValue.objects.exists()


def test_an_unknown_key_is_refused(configured):
    ran = fails("configure_connector", SERVICE_ID, "--set", f"client_id={CLIENT_ID}")
    assert "client_id: unknown key" in ran.message
    assert stored() == {"clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET, "botToken": BOT_TOKEN}


def test_an_unknown_service_is_refused(db):
    ran = fails("configure_connector", "appmixer:nope", "--set", f"clientId={CLIENT_ID}")
    assert "appmixer:nope" in ran.message
    assert not ConnectorConfig.objects.exists()


def test_set_without_equals_sign_does_not_echo_what_was_given(db):
    ran = fails("configure_connector", SERVICE_ID, "--set", NEW_SECRET)
    assert "KEY=VALUE" in ran.message


def test_a_key_given_twice_is_refused(db, monkeypatch):
    monkeypatch.setenv("SECRET", CLIENT_SECRET)
    ran = fails(
        "configure_connector", SERVICE_ID,
        "--set", f"clientSecret={NEW_SECRET}",
        "--set-from-env", "clientSecret=SECRET",
    )
    assert "clientSecret" in ran.message
    assert not ConnectorValue.objects.exists()


def test_configure_without_any_change_asked_for_is_refused(db):
    ran = fails("configure_connector", SERVICE_ID)
    assert "--set" in ran.message


# show_connector


def test_show_lists_keys_with_secrets_masked_and_the_redirect_url(configured, settings):
    ran = succeeds("show_connector", SERVICE_ID)

    lines = ran.out.splitlines()
    assert lines[0] == "Discord (appmixer:discord)"
    assert any("clientId" in line and line.endswith(CLIENT_ID) for line in lines)
    assert any("clientSecret" in line and line.endswith("••••" + CLIENT_SECRET[-4:]) for line in lines)
    assert any("botToken" in line and line.endswith("••••" + BOT_TOKEN[-4:]) for line in lines)
    assert lines[-1] == f"Redirect URL: {redirect_url(settings)}"


def test_show_says_which_keys_are_not_set(db, settings):
    succeeds("configure_connector", SERVICE_ID, "--set", f"clientId={CLIENT_ID}")
    lines = succeeds("show_connector", SERVICE_ID).out.splitlines()
    assert any("clientSecret" in line and line.endswith("not set") for line in lines)
    assert any("botToken" in line and line.endswith("not set") for line in lines)
    assert lines[-1] == f"Redirect URL: {redirect_url(settings)}"


def test_show_json_is_for_scripts_and_masks_secrets(configured, settings):
    succeeds("configure_connector", SERVICE_ID, "--clear", "botToken")

    document = json.loads(succeeds("show_connector", SERVICE_ID, "--json").out)

    assert document["service_id"] == SERVICE_ID
    assert document["redirect_url"] == redirect_url(settings)
    keys = document["keys"]
    assert keys["clientId"] == {"set": True, "secret": False, "value": CLIENT_ID}
    assert keys["clientSecret"] == {"set": True, "secret": True, "value": "••••" + CLIENT_SECRET[-4:]}
    assert keys["botToken"] == {"set": False, "secret": True, "value": None}


def test_show_an_unknown_service_is_refused(db):
    assert "appmixer:nope" in fails("show_connector", "appmixer:nope").message


# check_connector


@pytest.fixture
def discord(settings, configured):
    """Discord as the guide wants it: every check passes."""
    base = settings.CONNECTORS["discord"]["API_BASE_URL"]
    bot = matchers.header_matcher({"Authorization": f"Bot {BOT_TOKEN}"})
    basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    with responses.RequestsMock() as mock:
        mock.get(f"{base}/users/@me", match=[bot], json={"id": "987654321098765432", "username": "Backoffice", "bot": True})
        mock.post(
            f"{base}/oauth2/token",
            match=[
                matchers.header_matcher({"Authorization": f"Basic {basic}"}),
                matchers.urlencoded_params_matcher({"grant_type": "client_credentials", "scope": "identify"}),
            ],
            json={"access_token": "app-token", "token_type": "Bearer", "expires_in": 604800, "scope": "identify"},
        )
        mock.get(
            f"{base}/oauth2/applications/@me",
            match=[bot],
            json={
                "id": CLIENT_ID,
                "name": "Backoffice",
                "redirect_uris": [redirect_url(settings)],
                "bot_public": True,
                "bot_require_code_grant": True,
                "flags": 1 << 15,
            },
        )
        yield mock


def test_check_passes_when_discord_is_set_up_as_the_guide_says(discord):
    ran = succeeds("check_connector", SERVICE_ID)

    *lines, breaker = ran.out.splitlines()
    assert len(lines) == 9
    assert all(line.startswith("✓ ") for line in lines)
    assert breaker == "  Refresh circuit breaker: closed (0 timeout(s) or server error(s) in a row)"
    assert "✓ Bot token: Accepted: the bot is Backoffice (987654321098765432)." in lines
    assert "✓ Server Members Intent on: On." in lines


def test_check_fails_with_a_line_and_a_hint_for_each_setting_that_is_off(discord, settings):
    discord.replace(
        responses.GET,
        f"{settings.CONNECTORS['discord']['API_BASE_URL']}/oauth2/applications/@me",
        json={"id": CLIENT_ID, "redirect_uris": [], "bot_public": False, "bot_require_code_grant": True, "flags": 0},
    )

    ran = fails("check_connector", SERVICE_ID)

    assert ran.message == "3 of 9 checks failed."
    lines = ran.out.splitlines()
    assert "✗ Public Bot on: Off. — Turn on Bot → Public Bot in the Developer Portal." in lines
    assert any(line.startswith("✗ Redirect URL registered:") and "OAuth2 → Redirects" in line for line in lines)
    assert any(line.startswith("✗ Server Members Intent on:") for line in lines)
    assert sum(line.startswith("✓ ") for line in lines) == 6


def test_check_fails_when_discord_refuses_the_bot_token(discord, settings):
    discord.replace(
        responses.GET,
        f"{settings.CONNECTORS['discord']['API_BASE_URL']}/users/@me",
        status=401,
        json={"message": "401: Unauthorized", "code": 0},
    )
    discord.assert_all_requests_are_fired = False

    ran = fails("check_connector", SERVICE_ID)

    assert ran.message == "2 of 3 checks failed."
    assert ran.out.splitlines()[0].startswith("✗ Bot token: Discord refused the credentials")


def test_check_without_configuration_fails_without_asking_discord(db):
    with responses.RequestsMock():
        ran = fails("check_connector", SERVICE_ID)
    assert ran.message == "3 of 3 checks failed."
    assert all(line.startswith("✗ ") for line in ran.out.splitlines()[:-1])


# rotate_encryption_key and a wrong key


def test_rotation_reports_the_count_and_the_old_key_can_go(configured, settings, django_user_model):
    key_a = settings.FIELD_ENCRYPTION_KEY[0]
    ConnectedAccount.objects.create(
        user=django_user_model.objects.create_user("ada"),
        service_id=SERVICE_ID,
        uid="80351110224678912",
        access_token="Qm7Tn2Vx8Lp4Rz1Ks6Hw3Jd9",
        refresh_token="Yc5Gb0Nf7Mq2Wt8Ax4Ve1Su6",
    )
    settings.FIELD_ENCRYPTION_KEY = [KEY_B, key_a]

    ran = succeeds("rotate_encryption_key")

    assert ran.out == (
        "Re-encrypted 5 values under the first key of FIELD_ENCRYPTION_KEY. "
        "The other keys can now be removed.\n"
    )
    settings.FIELD_ENCRYPTION_KEY = [KEY_B]
    assert json.loads(succeeds("show_connector", SERVICE_ID, "--json").out)["keys"]["botToken"]["set"]
    assert stored() == {"clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET, "botToken": BOT_TOKEN}
    settings.FIELD_ENCRYPTION_KEY = [key_a]
    assert "FIELD_ENCRYPTION_KEY" in fails("show_connector", SERVICE_ID).message


@pytest.mark.parametrize(
    "command",
    [
        ("configure_connector", SERVICE_ID, "--set", f"clientSecret={NEW_SECRET}"),
        ("configure_connector", SERVICE_ID, "--clear", "botToken"),
        ("show_connector", SERVICE_ID),
        ("show_connector", SERVICE_ID, "--json"),
        ("check_connector", SERVICE_ID),
        ("rotate_encryption_key",),
    ],
)
def test_every_command_names_the_setting_when_the_key_is_wrong_and_rewrites_nothing(
    configured, settings, command
):
    before = raw_values()
    settings.FIELD_ENCRYPTION_KEY = [KEY_WRONG]

    with responses.RequestsMock():
        ran = fails(*command)

    assert "FIELD_ENCRYPTION_KEY" in ran.message
    assert ran.out == ""
    assert raw_values() == before


def test_each_command_that_changes_something_leaves_one_line_on_record(db, caplog, standin):
    caplog.set_level(logging.INFO, logger="connectors.audit")

    call_command("configure_connector", SERVICE_ID, "--set", "scopes=identify", stdout=StringIO())
    call_command("configure_connector", SERVICE_ID, "--set", "scopes=identify", stdout=StringIO())
    call_command("rotate_encryption_key", stdout=StringIO())

    lines = [record.getMessage() for record in caplog.records if record.name == "connectors.audit"]
    operator = getpass.getuser()
    assert lines == [
        f"configure_connector by {operator}: updated {SERVICE_ID}: scopes",
        # The stand-in's clientId, clientSecret, botToken and publicKey, and the scopes.
        f"rotate_encryption_key by {operator}: re-encrypted 5 values under the first key",
    ]
    assert all(value not in caplog.text for value in (standin.app.client_secret, standin.app.bot_token))
