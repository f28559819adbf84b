"""With DISCORD_EMULATOR on, runserver starts the Discord and Slack stand-ins, which pass Test credentials
(Discord's public key and events URL too), say what they are, and keep what they know across restarts."""

import json
import logging
import socket
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from django.core import mail
from django.core.management import CommandError

from connectors.config import config_values
from connectors.models import ConnectedAccount, ConnectorConfig
from connectors.registry import registry
from connectors.tokens import account_check
from standin.dev import standin_state_path
from standin.discord import DEFAULT_APP
from standin.management.commands.runserver import Command as RunserverCommand
from standin.slack import DEFAULT_APP as SLACK_APP
from tests.conftest import SERVICE_ID
from tests.helpers import connector_settings, runserver, seed_account

SLACK = "appmixer:slack"


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def emulator(dev_mode):
    """The settings DISCORD_EMULATOR makes, on free ports; the stand-ins keep their state in memory."""
    discord, slack = free_port(), free_port()
    dev_mode.STANDIN_STATE_PATH = None
    dev_mode.DISCORD_EMULATOR = True
    dev_mode.DISCORD_EMULATOR_PORT = discord
    dev_mode.SLACK_EMULATOR_PORT = slack
    connector_settings(
        dev_mode,
        API_BASE_URL=f"http://127.0.0.1:{discord}/api/v10",
        AUTHORIZE_URL=f"http://127.0.0.1:{discord}/oauth2/authorize",
        HTTP_TIMEOUT=2.0,
    )
    connector_settings(
        dev_mode, "slack",
        API_BASE_URL=f"http://127.0.0.1:{slack}/api",
        AUTHORIZE_URL=f"http://127.0.0.1:{slack}/oauth/v2/authorize",
        HTTP_TIMEOUT=2.0,
    )
    return dev_mode


def serve(address="127.0.0.1:8000", while_serving=lambda: None):
    command, out, err = runserver(RunserverCommand, address, while_serving=while_serving)
    command.stop_standins()
    return command, out, err


def test_test_credentials_passes_every_check_against_the_stand_in_runserver_starts(emulator):
    results = []

    def test_credentials():
        connector = registry.get(SERVICE_ID)
        results.extend(connector.check_credentials(config_values(SERVICE_ID)))

    _, out, _ = serve(while_serving=test_credentials)
    assert f"Discord stand-in at http://127.0.0.1:{emulator.DISCORD_EMULATOR_PORT}" in out
    assert len(results) == 9
    assert [(r.name, r.detail) for r in results if not r.ok] == []
    details = {r.name: r.detail for r in results}
    assert details["Public key"] == "The application's public key."
    assert details["Events URL"] == "Discord sends events to http://127.0.0.1:8000/webhooks/discord/events."


def test_slack_test_credentials_passes_every_check_against_the_slack_stand_in_runserver_starts(emulator):
    results = []

    def test_credentials():
        results.extend(registry.get(SLACK).check_credentials(config_values(SLACK)))

    _, out, _ = serve(while_serving=test_credentials)
    assert f"Slack stand-in at http://127.0.0.1:{emulator.SLACK_EMULATOR_PORT}; {SLACK} holds its credentials." in out
    assert [result.name for result in results] == ["Client ID", "Client secret", "Redirect URL registered"]
    assert [(r.name, r.detail) for r in results if not r.ok] == []


def test_runserver_says_both_stand_ins_run_and_registers_this_sites_redirect_urls(emulator):
    command, out, _ = serve()
    assert "Local Discord and Slack stand-ins running (DISCORD_EMULATOR is on):" in out
    assert command.standins["discord"].app.redirect_uris == ["http://127.0.0.1:8000/auth/discord/callback"]
    assert command.standins["slack"].app.redirect_uris == ["http://127.0.0.1:8000/auth/slack/callback"]
    assert command.standins["discord"].app.event_webhooks_url == "http://127.0.0.1:8000/webhooks/discord/events"


def test_the_stand_ins_store_their_credentials_once_and_on_record(emulator, caplog):
    caplog.set_level(logging.INFO, logger="connectors.audit")
    serve()
    audit = [r.getMessage() for r in caplog.records if r.name == "connectors.audit"]
    assert len(audit) == 2
    assert all(line.startswith("runserver by ") for line in audit)
    assert audit[0].endswith(f"stored the stand-in's credentials in {SERVICE_ID}: clientId, clientSecret, botToken, publicKey")
    assert audit[1].endswith(f"stored the stand-in's credentials in {SLACK}: clientId, clientSecret, signingSecret")
    for secret in (DEFAULT_APP.client_secret, SLACK_APP.client_secret, SLACK_APP.signing_secret):
        assert not any(secret in line for line in audit)
    updated = {c.service_id: c.updated_at for c in ConnectorConfig.objects.all()}

    caplog.clear()
    serve()
    assert [r for r in caplog.records if r.name == "connectors.audit"] == []
    assert {c.service_id: c.updated_at for c in ConnectorConfig.objects.all()} == updated


def test_a_busy_slack_port_stops_runserver_saying_which_setting_to_change(emulator):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", emulator.SLACK_EMULATOR_PORT))
        with pytest.raises(CommandError, match="set SLACK_EMULATOR_PORT to a free port"):
            runserver(RunserverCommand, "127.0.0.1:8000")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", emulator.DISCORD_EMULATOR_PORT))


def test_runserver_with_the_stand_in_still_warns_when_connect_would_lead_elsewhere(emulator):
    _, _, err = serve("127.0.0.1:8500")
    assert "serving on 127.0.0.1:8500, but PUBLIC_BASE_URL is http://127.0.0.1:8000" in err


def test_the_development_stand_ins_keep_their_state_in_the_repositorys_ignored_standin_folder(settings):
    assert standin_state_path() == Path(settings.BASE_DIR) / ".standin" / "state.json"
    ignored = (Path(settings.BASE_DIR) / ".gitignore").read_text().splitlines()
    assert ".standin/" in ignored


def slack_install(port, redirect_url):
    """The person allows the app on the Slack stand-in, and the site exchanges the code: the bot token."""
    base = f"http://127.0.0.1:{port}"
    answer = requests.get(base + "/oauth/v2/authorize/_approve", allow_redirects=False, timeout=5, params={
        "client_id": SLACK_APP.client_id, "scope": "chat:write", "redirect_uri": redirect_url, "action": "authorize"})
    code = parse_qs(urlsplit(answer.headers["Location"]).query)["code"][0]
    body = requests.post(base + "/api/oauth.v2.access", auth=(SLACK_APP.client_id, SLACK_APP.client_secret),
                         data={"code": code, "redirect_uri": redirect_url}, timeout=5).json()
    assert body["ok"], body
    return body


def test_after_a_restart_check_the_grant_leaves_every_account_active(emulator, alice, tmp_path):
    """The issue: restarting `make run` made the stand-ins forget their grants, so Check the grant marked
    every account and mailed every person."""
    emulator.STANDIN_STATE_PATH = tmp_path / ".standin" / "state.json"
    installed = {}

    def connect_slack():
        installed.update(slack_install(emulator.SLACK_EMULATOR_PORT, registry.get(SLACK).redirect_url()))

    command, out, _ = serve(while_serving=connect_slack)
    assert f"They keep their people, grants and keys in {emulator.STANDIN_STATE_PATH}" in out
    assert command.standins["discord"].state_path == command.standins["slack"].state_path == (
        emulator.STANDIN_STATE_PATH)
    # Accounts the site holds: a Discord one, one whose access token lapsed (its refresh token must still
    # work), and the Slack one just connected.
    discord = command.standins["discord"]
    fresh = seed_account(discord, alice, expires_in=3600)
    lapsed = seed_account(discord, alice, expires_in=-60)
    slack = ConnectedAccount.objects.create(user=alice, service_id=SLACK, uid=installed["authed_user"]["id"],
                                            access_token=installed["access_token"], scopes="chat:write")
    assert set(json.loads(emulator.STANDIN_STATE_PATH.read_text())) == {"version", "discord", "slack"}

    checked = []

    def check_the_grant():
        for account in (fresh, lapsed, slack):
            checked.append(account_check(ConnectedAccount.objects.get(pk=account.pk)))

    again, _, _ = serve(while_serving=check_the_grant)
    assert len(checked) == 3
    accounts = ConnectedAccount.objects.filter(pk__in=[fresh.pk, lapsed.pk, slack.pk])
    assert {account.status for account in accounts} == {ConnectedAccount.Status.ACTIVE}
    assert mail.outbox == []
    assert again.standins["discord"].access_token_valid(ConnectedAccount.objects.get(pk=lapsed.pk).access_token)
