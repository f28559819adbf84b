"""With DISCORD_EMULATOR on, runserver starts the stand-in, which passes Test credentials and says what it is."""

import logging
import socket

import pytest

from connectors.config import config_values
from connectors.models import ConnectorConfig
from connectors.registry import registry
from standin.discord import DEFAULT_APP
from standin.management.commands.runserver import Command as RunserverCommand
from tests.conftest import SERVICE_ID
from tests.helpers import connector_settings, runserver


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def emulator(dev_mode):
    port = free_port()
    dev_mode.DISCORD_EMULATOR = True
    dev_mode.DISCORD_EMULATOR_PORT = port
    connector_settings(
        dev_mode,
        API_BASE_URL=f"http://127.0.0.1:{port}/api/v10",
        AUTHORIZE_URL=f"http://127.0.0.1:{port}/oauth2/authorize",
        HTTP_TIMEOUT=2.0,
    )
    return dev_mode


def test_test_credentials_passes_every_check_against_the_stand_in_runserver_starts(emulator):
    results = []

    def test_credentials():
        connector = registry.get(SERVICE_ID)
        results.extend(connector.check_credentials(config_values(SERVICE_ID)))

    command, out, _ = runserver(RunserverCommand, "127.0.0.1:8000", while_serving=test_credentials)
    command.standin.stop()
    assert "Local Discord stand-in at" in out
    assert len(results) == 9
    assert [(r.name, r.message) for r in results if not r.ok] == []


def test_the_stand_in_stores_its_credentials_once_and_on_record(emulator, caplog):
    caplog.set_level(logging.INFO, logger="connectors.audit")
    runserver(RunserverCommand, "127.0.0.1:8000")[0].standin.stop()
    audit = [r.getMessage() for r in caplog.records if r.name == "connectors.audit"]
    assert len(audit) == 1
    assert audit[0].startswith("runserver by ")
    assert audit[0].endswith(f"stored the stand-in's credentials in {SERVICE_ID}: clientId, clientSecret, botToken")
    assert DEFAULT_APP.client_secret not in audit[0]
    updated = ConnectorConfig.objects.get(service_id=SERVICE_ID).updated_at

    caplog.clear()
    runserver(RunserverCommand, "127.0.0.1:8000")[0].standin.stop()
    assert [r for r in caplog.records if r.name == "connectors.audit"] == []
    assert ConnectorConfig.objects.get(service_id=SERVICE_ID).updated_at == updated


def test_runserver_with_the_stand_in_still_warns_when_connect_would_lead_elsewhere(emulator):
    command, _, err = runserver(RunserverCommand, "127.0.0.1:8500")
    command.standin.stop()
    assert "serving on 127.0.0.1:8500, but PUBLIC_BASE_URL is http://127.0.0.1:8000" in err
