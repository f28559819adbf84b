"""The contract's defaults: a connector that declares only its identity, fields and URLs works.

The fake connector overrides no hook; it runs the test kit every connector
runs, beside Discord, through the same views, token service and commands.
"""

import re
from pathlib import Path

import pytest

from connectors.base import Connector
from tests.helpers import ConnectorConformance, standin_harness


class TestFakeConnectorConformance(ConnectorConformance):
    @pytest.fixture
    def harness(self, standin, fake_connector):
        app = standin.app
        return standin_harness(
            standin, fake_connector, {"clientId": app.client_id, "clientSecret": app.client_secret}
        )


def test_every_connector_offers_its_own_connect_button(client_alice, fake_connector, configured):
    from connectors.config import config_update

    config_update(service_id=fake_connector.service_id, values={"clientId": "fake-id", "clientSecret": "fake-secret-0123"})
    page = client_alice.get("/accounts/").content.decode()
    assert 'href="/auth/discord/connect">Connect Discord account</a>' in page
    assert 'href="/auth/fake/connect">Connect Fakeprovider account</a>' in page
    assert "Sign in with Fakeprovider." in page


CORE = Path(__file__).resolve().parents[2]


def _core_sources():
    yield from sorted((CORE / "connectors").glob("*.py"))
    yield from sorted((CORE / "connectors" / "management" / "commands").glob("*.py"))
    yield from sorted((CORE / "templates").rglob("*.html"))


def test_every_hook_the_core_calls_is_declared_on_the_base_class():
    """Reading ``connector.<name>`` anywhere in the core names a part of the contract."""
    used = set()
    for source in _core_sources():
        used |= set(re.findall(r"\bconnector\.([a-z_]+)", source.read_text()))
    assert used, "the scan found no use of a connector"
    undeclared = sorted(name for name in used if not hasattr(Connector, name))
    assert not undeclared, f"the core uses hooks the contract does not declare: {undeclared}"


def test_a_token_the_provider_issues_per_server_is_stored_encrypted_and_never_shown(client_alice, alice, fake_connector):
    from django.db import connection

    from connectors.accounts import account_connect
    from connectors.models import AccountServer

    server_token = "per-server-token-" + "z" * 30
    account_connect(
        user=alice,
        connector=fake_connector,
        token={"access_token": "user-token-" + "a" * 30, "token_type": "Bearer", "expires_in": 3600},
        profile={"uid": "U1", "username": "fay"},
        server={"id": "T1", "name": "Fay's workspace", "token": server_token},
    )
    assert AccountServer.objects.get().token == server_token
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT token FROM {AccountServer._meta.db_table}")
        assert server_token not in cursor.fetchone()[0]
    page = client_alice.get("/accounts/").content.decode()
    assert "Fay&#x27;s workspace" in page and server_token not in page


def test_no_core_module_or_template_names_a_provider():
    """What `grep -rniE 'discord|slack' connectors/*.py templates/connectors/` judges, comments included."""
    sources = [*sorted((CORE / "connectors").glob("*.py")), *sorted((CORE / "templates" / "connectors").rglob("*"))]
    assert len(sources) > 20
    named = [
        f"{source.relative_to(CORE)}:{number}"
        for source in sources
        if source.is_file()
        for number, line in enumerate(source.read_text().splitlines(), start=1)
        if re.search(r"discord|slack", line, re.IGNORECASE)
    ]
    assert not named, f"core files name a provider: {named}"
