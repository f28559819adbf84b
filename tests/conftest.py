import ipaddress
import socket

import pytest

from connectors.config import config_update
from standin.dev import store_standin_credentials

SERVICE_ID = "appmixer:discord"

# Values shaped like the Developer Portal's; the tests look for them in every
# page, log and column that must not hold them.
CLIENT_ID = "123456789012345678"
CLIENT_SECRET = "s3cr3t-Client-Secret-Value-0123456789AB"
BOT_TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4.GbOtTk.bot-token-value-abcdefghijklmnopqrstuvwxyz"


def pytest_collection_modifyitems(items):
    """Every test may use every database alias and so the cache's connection.

    On PostgreSQL the database cache has an alias of its own (settings:
    CACHES); each request to Discord takes its permit there.
    """
    for item in items:
        if item.get_closest_marker("django_db") is None:
            item.add_marker(pytest.mark.django_db(databases="__all__"))


@pytest.fixture(scope="session", autouse=True)
def _close_connections_before_teardown(django_db_setup, django_db_blocker):
    """The cache's own alias (PostgreSQL) holds a connection Django's teardown does not
    close; the test database could not be dropped while it is open."""
    yield
    from django.db import connections

    with django_db_blocker.unblock():
        connections.close_all()


@pytest.fixture(autouse=True)
def _empty_cache():
    """The shared pace starts empty: a 429 one test provoked holds back no other."""
    from django.core.cache import cache

    cache.clear()
    yield


@pytest.fixture(autouse=True)
def _no_internet(monkeypatch):
    """Unit tests never reach the real Discord: only loopback connections are allowed."""
    real_connect = socket.socket.connect

    def connect(sock, address):
        host = address[0] if isinstance(address, tuple) else None
        if host is not None:
            try:
                loopback = ipaddress.ip_address(host).is_loopback
            except ValueError:
                loopback = host == "localhost"
            if not loopback:
                raise OSError(f"tests may not connect to {host}")
        return real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)


@pytest.fixture
def killable_cache(settings):
    """Django's cache on a Redis of the test's own (tests/faults.py), which the test may kill."""
    from tests.faults import RedisServer

    with RedisServer() as server:
        settings.CACHES = {
            "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": server.url()}
        }
        yield server


@pytest.fixture
def alice(db):
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_user("alice", password="pw-alice-123")


@pytest.fixture
def client_alice(client, alice):
    """Django's test client, logged in as an ordinary end user."""
    client.force_login(alice)
    return client


@pytest.fixture
def discord_values():
    return {"clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET, "botToken": BOT_TOKEN}


@pytest.fixture
def configured(db, discord_values):
    """The Discord connector with all three values stored."""
    config_update(service_id=SERVICE_ID, values=discord_values)
    return discord_values


@pytest.fixture
def all_configured(configured):
    """Every registered connector configured (Discord with the values above)."""
    from connectors.registry import registry

    slack = {"clientId": "2141029472.691202649728", "clientSecret": "e1b9e11dfcd19c1982d5de12921e17e8",
             "signingSecret": "8f742231b10e8888abcd99e0c67291ac"}
    config_update(service_id="appmixer:slack", values=slack)
    assert {connector.service_id for connector in registry} == {SERVICE_ID, "appmixer:slack"}
    return configured


@pytest.fixture
def wrong_key(settings, configured):
    """The values were written under one key; the application now runs with another."""
    from cryptography.fernet import Fernet

    settings.FIELD_ENCRYPTION_KEY = [Fernet.generate_key().decode()]


@pytest.fixture
def dev_mode(settings):
    """DEBUG on, and Connect coming back to runserver's default address, as `make run` sets them."""
    settings.DEBUG = True
    settings.PUBLIC_BASE_URL = "http://127.0.0.1:8000"
    return settings


@pytest.fixture(scope="session")
def _standin_server():
    from standin.discord import StandIn

    with StandIn() as server:
        yield server


@pytest.fixture
def standin(_standin_server, settings, db):
    """The local Discord stand-in, fresh for each test, with its credentials (its public key too) stored."""
    server = _standin_server
    server.reset()
    server.rate_limit(None)
    server.app.redirect_uris = []
    server.app.event_webhooks_url = None
    from tests.helpers import connector_settings

    connector_settings(
        settings, "discord", API_BASE_URL=server.api_base_url, AUTHORIZE_URL=server.authorize_url, HTTP_TIMEOUT=2.0
    )
    store_standin_credentials(server.app)
    return server


@pytest.fixture(scope="session")
def _slack_standin_server():
    from standin.slack import StandIn

    with StandIn() as server:
        yield server


@pytest.fixture
def slack_standin(_slack_standin_server, settings, db):
    """The local Slack stand-in, fresh for each test (token rotation off, as for a new Slack app),
    with its credentials stored."""
    server = _slack_standin_server
    server.reset()
    server.app.redirect_uris = []
    server.app.token_rotation = False
    from tests.helpers import connector_settings

    connector_settings(
        settings, "slack", API_BASE_URL=server.api_base_url, AUTHORIZE_URL=server.authorize_url, HTTP_TIMEOUT=2.0
    )
    store_standin_credentials(server.app, provider="slack")
    return server


@pytest.fixture
def fake_connector(standin, settings):
    """A connector with nothing but the contract's defaults, registered beside Discord for one test."""
    from connectors.registry import registry
    from tests.helpers import FakeConnector, connector_settings

    connector_settings(
        settings,
        "fake",
        AUTHORIZE_URL=standin.authorize_url,
        TOKEN_URL=standin.api_base_url + "/oauth2/token",
        PROFILE_URL=standin.api_base_url + "/users/@me",
        HTTP_TIMEOUT=2.0,
    )
    connector = registry.register(FakeConnector())
    yield connector
    registry.unregister(connector.service_id)


@pytest.fixture
def service_key(db):
    """A service key with the default scope, and its secret as the command printed it."""
    from api.keys import service_key_create

    return service_key_create(name="workflow-engine", scopes=["tokens:read"])


@pytest.fixture
def api(service_key):
    """A test client of its own (``client`` stays keyless) sending the service key on every request."""
    from django.test import Client

    return Client(HTTP_AUTHORIZATION=f"Bearer {service_key[1]}")
