"""The quick start: an admin user exists, runserver says when Connect would lead elsewhere,
and the stand-in it starts passes Test credentials and says what it is."""

import logging
import socket
from io import StringIO
from unittest import mock

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from connectors.config import config_values
from connectors.discord.management.commands.runserver import Command as RunserverCommand
from connectors.models import ConnectorConfig
from connectors.registry import registry
from standin.discord import DEFAULT_APP
from tests.conftest import SERVICE_ID


def test_ensure_superuser_creates_one_admin_once(db):
    out = StringIO()
    call_command("ensure_superuser", stdout=out)
    assert "Created the admin user 'admin' with password" in out.getvalue()
    assert get_user_model().objects.get(username="admin").is_superuser
    again = StringIO()
    call_command("ensure_superuser", stdout=again)
    assert "log in at /admin/ as 'admin'" in again.getvalue()
    password = out.getvalue().split("with password ")[1].split()[0]
    assert get_user_model().objects.get(username="admin").check_password(password)
    assert password not in again.getvalue()
    assert get_user_model().objects.filter(is_superuser=True).count() == 1


def test_pages_say_plainly_when_they_talk_to_the_stand_in(client, settings, db):
    client.force_login(get_user_model().objects.create_user("gil", password="pw-gil-123"))
    settings.DISCORD_EMULATOR = True
    assert "local Discord stand-in" in client.get("/accounts/").content.decode()
    settings.DISCORD_EMULATOR = False
    assert "local Discord stand-in" not in client.get("/accounts/").content.decode()


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def runserver(address, *, while_serving=lambda: None):
    """`manage.py runserver --noreload` up to where it would serve; `while_serving` runs there."""
    command = RunserverCommand()
    out, err = StringIO(), StringIO()
    # runserver closes the connections before serving: the test's transaction needs its own.
    with mock.patch("django.core.management.commands.runserver.run", lambda *a, **k: while_serving()), \
            mock.patch("django.core.management.commands.runserver.connections", mock.Mock(all=lambda **kwargs: [])):
        call_command(command, address, "--noreload", "--skip-checks", stdout=out, stderr=err)
    return command, out.getvalue(), err.getvalue()


@pytest.fixture
def dev_mode(settings):
    settings.DEBUG = True
    settings.PUBLIC_BASE_URL = "http://127.0.0.1:8000"
    return settings


def test_runserver_warns_when_connect_would_send_the_browser_to_another_port(dev_mode):
    _, _, err = runserver("127.0.0.1:8500")
    assert "serving on 127.0.0.1:8500, but PUBLIC_BASE_URL is http://127.0.0.1:8000" in err
    assert "make run HOST=127.0.0.1:8500" in err


@pytest.mark.parametrize("address", ["127.0.0.1:8000", "0.0.0.0:8000", "8000"])
def test_runserver_says_nothing_when_the_address_is_the_public_one(dev_mode, address):
    assert runserver(address)[2] == ""


def test_runserver_does_not_warn_with_debug_off(settings):
    settings.PUBLIC_BASE_URL = "https://backoffice.example.com"
    assert runserver("127.0.0.1:8500")[2] == ""


@pytest.fixture
def emulator(dev_mode):
    port = free_port()
    dev_mode.DISCORD_EMULATOR = True
    dev_mode.DISCORD_EMULATOR_PORT = port
    dev_mode.DISCORD_API_BASE_URL = f"http://127.0.0.1:{port}/api/v10"
    dev_mode.DISCORD_AUTHORIZE_URL = f"http://127.0.0.1:{port}/oauth2/authorize"
    dev_mode.DISCORD_HTTP_TIMEOUT = 2.0
    return dev_mode


def test_test_credentials_passes_every_check_against_the_stand_in_runserver_starts(emulator):
    results = []

    def test_credentials():
        connector = registry.get(SERVICE_ID)
        results.extend(connector.check_credentials(config_values(SERVICE_ID)))

    command, out, _ = runserver("127.0.0.1:8000", while_serving=test_credentials)
    command.standin.stop()
    assert "Local Discord stand-in at" in out
    assert len(results) == 7
    assert [(r.name, r.message) for r in results if not r.ok] == []


def test_the_stand_in_stores_its_credentials_once_and_on_record(emulator, caplog):
    caplog.set_level(logging.INFO, logger="connectors.audit")
    runserver("127.0.0.1:8000")[0].standin.stop()
    audit = [r.getMessage() for r in caplog.records if r.name == "connectors.audit"]
    assert len(audit) == 1
    assert audit[0].startswith("runserver by ")
    assert audit[0].endswith(f"stored the stand-in's credentials in {SERVICE_ID}: clientId, clientSecret, botToken")
    assert DEFAULT_APP.client_secret not in audit[0]
    updated = ConnectorConfig.objects.get(service_id=SERVICE_ID).updated_at

    caplog.clear()
    runserver("127.0.0.1:8000")[0].standin.stop()
    assert [r for r in caplog.records if r.name == "connectors.audit"] == []
    assert ConnectorConfig.objects.get(service_id=SERVICE_ID).updated_at == updated
