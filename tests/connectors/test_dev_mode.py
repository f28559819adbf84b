"""The quick start: an admin user exists, and runserver says when Connect would lead elsewhere."""

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from connectors.management.commands.runserver import Command as RunserverCommand
from tests.helpers import runserver


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


def test_runserver_warns_when_connect_would_send_the_browser_to_another_port(dev_mode):
    _, _, err = runserver(RunserverCommand, "127.0.0.1:8500")
    assert "serving on 127.0.0.1:8500, but PUBLIC_BASE_URL is http://127.0.0.1:8000" in err
    assert "make run HOST=127.0.0.1:8500" in err


@pytest.mark.parametrize("address", ["127.0.0.1:8000", "0.0.0.0:8000", "8000"])
def test_runserver_says_nothing_when_the_address_is_the_public_one(dev_mode, address):
    assert runserver(RunserverCommand, address)[2] == ""


def test_runserver_does_not_warn_with_debug_off(settings):
    settings.PUBLIC_BASE_URL = "https://backoffice.example.com"
    assert runserver(RunserverCommand, "127.0.0.1:8500")[2] == ""
