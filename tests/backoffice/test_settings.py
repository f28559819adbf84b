"""Start-up: what an operator sees when the environment is wrong, and secure defaults."""

import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest

from tests.helpers import KEY, PRODUCTION, REPO, manage


@pytest.mark.parametrize("missing", ["SECRET_KEY", "FIELD_ENCRYPTION_KEY"])
def test_a_missing_secret_setting_stops_start_up_naming_it(missing):
    env = {k: v for k, v in PRODUCTION.items() if k != missing}
    result = manage("check", **env)
    assert result.returncode != 0
    assert f"{missing} is not set" in result.stderr


def test_a_malformed_encryption_key_stops_start_up_without_echoing_it():
    result = manage("check", **{**PRODUCTION, "FIELD_ENCRYPTION_KEY": f"{KEY},not-a-fernet-key-xyz"})
    assert result.returncode != 0
    assert "FIELD_ENCRYPTION_KEY: key number 2 is not a Fernet key" in result.stderr
    assert "not-a-fernet-key-xyz" not in result.stderr


def test_the_stand_in_is_refused_with_debug_off():
    result = manage("check", **{**PRODUCTION, "DISCORD_EMULATOR": "true"})
    assert result.returncode != 0
    assert "DISCORD_EMULATOR is on while DEBUG is off" in result.stderr


def test_deploy_checks_pass_with_no_further_variable():
    result = manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_each_security_default_can_be_turned_off():
    result = manage("check", "--deploy", **{**PRODUCTION, "SECURE_SSL_REDIRECT": "false"})
    assert "security.W008" in result.stderr + result.stdout


@pytest.mark.parametrize(
    "url, code",
    [("", "connectors.E002"), ("http://backoffice.example.com", "connectors.E003"),
     ("backoffice.example.com", "connectors.E003")],
)
def test_public_base_url_is_checked(url, code):
    result = manage("check", **{**PRODUCTION, "PUBLIC_BASE_URL": url})
    assert result.returncode != 0
    assert code in result.stderr


def test_a_redirect_url_the_site_does_not_serve_is_reported():
    result = manage("check", **{**PRODUCTION, "PUBLIC_BASE_URL": "https://example.com/somewhere"})
    assert result.returncode != 0
    assert "connectors.E004" in result.stderr
    assert "https://example.com/somewhere/auth/discord/callback" in result.stderr


def test_avatars_come_from_the_stand_in_in_development_and_from_discord_otherwise():
    show = (
        "from connectors.middleware import _image_origins; "
        "print(*_image_origins())"
    )
    development = manage("shell", "-v", "0", "-c", show, DEBUG="true", FIELD_ENCRYPTION_KEY=KEY,
                         DISCORD_EMULATOR="true", DISCORD_EMULATOR_PORT="8123")
    production = manage("shell", "-v", "0", "-c", show, **PRODUCTION)

    assert development.stdout.split() == ["http://127.0.0.1:8123"], development
    assert production.stdout.split() == ["https://cdn.discordapp.com"], production


def readme_production_environment():
    """The variables the README's *Production* block exports, its `…` filled in."""
    readme = (REPO / "README.md").read_text()
    block = readme.split("### Production", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    export = re.search(r"^export (.*?[^\\])$", block.replace("\\\n", " "), re.MULTILINE).group(1)
    variables = dict(word.split("=", 1) for word in shlex.split(export))
    filled = {name: PRODUCTION.get(name, value) if value == "…" else value for name, value in variables.items()}
    return {**filled, "DATABASE_URL": "sqlite:///:memory:"}


def test_the_readmes_production_steps_pass_in_a_checkout_where_make_run_left_a_dot_env(tmp_path):
    checkout = tmp_path / "checkout"
    shutil.copytree(REPO, checkout, ignore=shutil.ignore_patterns(
        ".git", ".venv", ".env", "db.sqlite3*", "staticfiles", "test-artifacts", "__pycache__", "bench"))
    subprocess.run([sys.executable, "scripts/write_env.py", ".env"], cwd=checkout, check=True,
                   capture_output=True, timeout=30)
    environment = readme_production_environment()
    assert environment["ENV_FILE"] == ""

    def check_deploy(env):
        return subprocess.run(
            [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
            cwd=checkout, env={"PATH": os.environ["PATH"], **env},
            capture_output=True, text=True, timeout=60, check=False,
        )

    result = check_deploy(environment)
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout
    without = check_deploy({k: v for k, v in environment.items() if k != "ENV_FILE"})
    assert "DISCORD_EMULATOR is on while DEBUG is off" in without.stderr


def test_on_postgresql_the_cache_commits_without_waiting_for_the_disk(db):
    """The pace's and the breaker's writes are seconds-long facts: durability buys them nothing."""
    from urllib.parse import urlsplit

    from django.db import connection

    url = os.environ.get("DATABASE_URL", "")
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL; runs in CI's PostgreSQL pass (DATABASE_URL=postgres://...)")
    # The test database, which exists while the tests run.
    url = urlsplit(url)._replace(path=f"/{connection.settings_dict['NAME']}").geturl()
    code = (
        "from django.db import connections\n"
        "for alias in ('default', 'cache'):\n"
        "    with connections[alias].cursor() as cursor:\n"
        "        cursor.execute('SHOW synchronous_commit')\n"
        "        print(alias, cursor.fetchone()[0])\n"
    )
    result = manage("shell", "-c", code, **{**PRODUCTION, "DATABASE_URL": url})
    assert result.returncode == 0, result.stderr
    assert "default on" in result.stdout
    assert "cache off" in result.stdout
