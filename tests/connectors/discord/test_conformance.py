"""The Discord connector passes the test kit every connector passes."""

import pytest

from connectors.registry import registry
from tests.conftest import SERVICE_ID
from tests.helpers import ConnectorConformance, standin_harness


class TestDiscordConformance(ConnectorConformance):
    @pytest.fixture
    def harness(self, standin):
        app = standin.app
        values = {"clientId": app.client_id, "clientSecret": app.client_secret, "botToken": app.bot_token}
        return standin_harness(standin, registry.get(SERVICE_ID), values)
