"""The stand-in is a development app: installed only with DISCORD_EMULATOR on, and never imported by
production code, so a deployment carries none of it."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
from django.apps import apps
from django.contrib.auth import get_user_model

from tests.helpers import KEY, PRODUCTION, REPO

BANNER = (
    '<div class="standin">This site is talking to the <strong>local Discord and Slack stand-ins</strong>, '
    "not to Discord or Slack: nothing here reaches a real Discord or Slack account.</div>"
)
EMULATOR = {"DEBUG": "true", "FIELD_ENCRYPTION_KEY": KEY, "DISCORD_EMULATOR": "true"}
DEVELOPMENT = {**EMULATOR, "DISCORD_EMULATOR": "false"}


def in_django(code, **env):
    """What `code` prints (as JSON) after django.setup(), in a child process on the project's settings
    and only the given environment, as a deployment would start."""
    script = "import json\nimport django\ndjango.setup()\n" + textwrap.dedent(code)
    base = {
        "PATH": os.environ["PATH"], "ENV_FILE": "", "DATABASE_URL": "sqlite:///:memory:",
        "DJANGO_SETTINGS_MODULE": "backoffice.settings",
    }
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, env={**base, **env},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


RUNSERVER = """
from django.apps import apps
from django.core.management import get_commands, load_command_class

app = get_commands()["runserver"]
command = load_command_class(app, "runserver")
print(json.dumps({
    "installed": apps.is_installed("standin"),
    "app": app,
    "classes": [cls.__module__ for cls in type(command).__mro__],
}))
"""


def test_with_the_emulator_on_runserver_is_the_stand_ins_and_still_the_core_ones():
    found = in_django(RUNSERVER, **EMULATOR)
    assert found["installed"] is True
    assert found["app"] == "standin"
    assert found["classes"][:2] == ["standin.management.commands.runserver", "connectors.management.commands.runserver"]


@pytest.mark.parametrize("env", [PRODUCTION, DEVELOPMENT], ids=["production", "development"])
def test_with_the_emulator_off_the_stand_in_is_not_installed_and_runserver_is_the_cores(env):
    found = in_django(RUNSERVER, **{**env, "DISCORD_EMULATOR": "false"})
    assert found["installed"] is False
    assert found["app"] == "connectors"
    assert found["classes"][0] == "connectors.management.commands.runserver"


def test_production_code_never_imports_the_stand_in():
    found = in_django(
        """
        import importlib
        import pkgutil
        import sys

        imported = []
        for name in ("backoffice", "connectors"):
            package = importlib.import_module(name)
            for module in pkgutil.walk_packages(package.__path__, f"{name}."):
                importlib.import_module(module.name)
                imported.append(module.name)
        standin = sorted(name for name in sys.modules if name.split(".")[0] == "standin")
        print(json.dumps({"imported": imported, "standin": standin}))
        """,
        **PRODUCTION, DISCORD_EMULATOR="false",
    )
    assert {"backoffice.urls", "backoffice.wsgi", "connectors.views", "connectors.discord.connector",
            "connectors.management.commands.runserver"} <= set(found["imported"])
    assert found["standin"] == []


def test_pages_say_plainly_when_they_talk_to_the_stand_in():
    page = in_django(
        """
        from django.test import Client
        from django.test.utils import setup_test_environment

        setup_test_environment()
        print(json.dumps(Client().get("/accounts/login/").content.decode()))
        """,
        **EMULATOR,
    )
    assert BANNER in page


def test_pages_say_nothing_of_a_stand_in_without_it(client, db):
    assert not apps.is_installed("standin")
    client.force_login(get_user_model().objects.create_user("gil", password="pw-gil-123"))
    page = client.get("/accounts/").content.decode()
    assert "stand-in" not in page and 'class="standin"' not in page
