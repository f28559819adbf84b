"""The events endpoint before a delivery is proven: whatever its headers say, 401, never a 500.

Each connector with events declares the shape of its signature headers
(``event_headers``); the endpoint reads them strictly, ASCII and in full,
before anything else reads them and before the body is read. Discord's: a
timestamp of 1–12 ASCII digits, a signature of 128 hex characters.
"""

import http.client
import json
import logging
import re
import time
from urllib.parse import urlsplit

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from connectors.base import Connector, ProviderEvent
from connectors.config import config_update
from connectors.events import MAX_EVENT_BYTES
from connectors.exceptions import EventRefused
from connectors.models import ConnectedAccount, EventDelivery
from connectors.registry import registry
from tests.conftest import SERVICE_ID
from tests.helpers import FakeConnector, connect

URL = "/webhooks/discord/events"
SIGNATURE, TIMESTAMP = "HTTP_X_SIGNATURE_ED25519", "HTTP_X_SIGNATURE_TIMESTAMP"
PING = json.dumps({"version": 1, "application_id": "123456789012345678", "type": 0}).encode()

# Timestamps that str.isdigit() (or \d, or int()) would take, or that look
# like a number some other way, none of them 1–12 ASCII digits.
BAD_TIMESTAMPS = {
    "superscript two": "²",
    "superscripts": "¹²³",
    "4,301 digits": "1" * 4301,
    "13 digits": "1" * 13,
    "arabic-indic digits": "١٧٠٠٠٠٠٠٠٠",
    "fullwidth digits": "１７００００００００",
    "empty": "",
    "leading blank": " 1700000000",
    "trailing blank": "1700000000 ",
    "trailing newline": "1700000000\n",
    "sign": "+1700000000",
    "negative": "-1",
    "underscore": "1_700_000_000",
    "hex": "0x65",
    "exponent": "1e9",
    "fraction": "1700000000.5",
    "two headers joined": "1700000000,1700000000",
}
BAD_SIGNATURES = {
    "127 characters": "a" * 127,
    "129 characters": "a" * 129,
    "not hex": "g" * 128,
    "fullwidth hex": "ａ" * 128,
    "superscript digits": "²" * 128,
    "blank inside": "a" * 64 + " " + "a" * 63,
    "trailing newline": "a" * 128 + "\n",
    "4,301 characters": "a" * 4301,
    "empty": "",
}


@pytest.fixture
def key(standin):
    """A key of the test's own, stored over the one the stand-in's credentials brought."""
    private = Ed25519PrivateKey.generate()
    public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
    config_update(service_id=SERVICE_ID, values={"publicKey": public})
    return private


def signed(private, body, stamp=None):
    stamp = str(int(time.time()) if stamp is None else stamp)
    return {SIGNATURE: private.sign(stamp.encode() + body).hex(), TIMESTAMP: stamp}


def removal(uid):
    return json.dumps({"version": 1, "application_id": "123456789012345678", "type": 1, "event": {
        "type": "APPLICATION_DEAUTHORIZED", "timestamp": "2099-01-01T00:00:00+00:00",
        "data": {"user": {"id": uid, "username": "someone"}},
    }}).encode()


def errors(caplog):
    """Every record at ERROR or above (a 500 logs django.request at ERROR with its traceback)."""
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


@pytest.fixture
def alice_connected(client_alice, standin):
    connect(client_alice, standin)
    return ConnectedAccount.objects.get()


@pytest.mark.parametrize("stamp", BAD_TIMESTAMPS.values(), ids=BAD_TIMESTAMPS.keys())
def test_a_timestamp_not_of_1_to_12_ascii_digits_is_401_before_it_is_read(
    client, key, alice_connected, caplog, stamp
):
    body = removal(alice_connected.uid)
    headers = {**signed(key, body), TIMESTAMP: stamp}
    with caplog.at_level(logging.WARNING):
        answer = client.post(URL, body, content_type="application/json", **headers)
    assert answer.status_code == 401
    assert not errors(caplog)
    assert "Discord event refused: The X-Signature-Timestamp header is missing or malformed." in caplog.messages
    assert ConnectedAccount.objects.get().status == ConnectedAccount.Status.ACTIVE
    assert not EventDelivery.objects.exists()


@pytest.mark.parametrize("signature", BAD_SIGNATURES.values(), ids=BAD_SIGNATURES.keys())
def test_a_signature_not_of_128_hex_characters_is_401_before_it_is_read(
    client, key, alice_connected, caplog, signature
):
    body = removal(alice_connected.uid)
    headers = {**signed(key, body), SIGNATURE: signature}
    with caplog.at_level(logging.WARNING):
        answer = client.post(URL, body, content_type="application/json", **headers)
    assert answer.status_code == 401
    assert not errors(caplog)
    assert "Discord event refused: The X-Signature-Ed25519 header is missing or malformed." in caplog.messages
    assert ConnectedAccount.objects.get().status == ConnectedAccount.Status.ACTIVE


def test_malformed_headers_never_reach_the_connectors_verification(client, key, monkeypatch):
    """The shapes are checked first: event_verify, event_read and the stored key are never read for them."""
    discord = registry.get(SERVICE_ID)
    reached = []
    monkeypatch.setattr(type(discord), "event_verify", lambda self, *args: reached.append("verify"))
    monkeypatch.setattr(type(discord), "event_read", lambda self, *args: reached.append("read"))
    monkeypatch.setattr("connectors.events.config_values", lambda service_id: reached.append("values"))
    for stamp in ("²", "1" * 4301, ""):
        headers = {**signed(key, PING), TIMESTAMP: stamp}
        assert client.post(URL, PING, content_type="application/json", **headers).status_code == 401
    assert client.post(URL, PING, content_type="application/json").status_code == 401
    assert reached == []


def test_a_well_formed_delivery_still_verifies_and_acts(client, key, alice_connected):
    """The strict reading takes what Discord sends: lowercase hex, and in capitals, which verify alike."""
    body = removal(alice_connected.uid)
    headers = signed(key, body)
    assert re.fullmatch(r"[0-9a-f]{128}", headers[SIGNATURE]) and re.fullmatch(r"[0-9]{10}", headers[TIMESTAMP])
    assert client.post(URL, PING, content_type="application/json", **signed(key, PING)).status_code == 204
    shouted = {**headers, SIGNATURE: headers[SIGNATURE].upper()}
    assert client.post(URL, body, content_type="application/json", **shouted).status_code == 204
    assert ConnectedAccount.objects.get().status == ConnectedAccount.Status.NEEDS_RECONNECT


@pytest.mark.parametrize("length", ["²", "¹²³", "1" * 4301, "-1", "0x10", str(MAX_EVENT_BYTES + 1), "9" * 18])
def test_a_malformed_or_too_long_content_length_is_401_and_the_body_is_never_read(
    client, key, caplog, monkeypatch, length
):
    """Django reads Content-Length with int(): read strictly first, a "²" is a 401, not a 500."""
    reached = []
    monkeypatch.setattr("connectors.events.config_values", lambda service_id: reached.append("values"))
    with caplog.at_level(logging.WARNING):
        answer = client.post(URL, PING, content_type="application/json", CONTENT_LENGTH=length, **signed(key, PING))
    assert answer.status_code == 401
    assert not errors(caplog) and reached == []


def test_a_body_longer_than_the_limit_is_401(client, key, caplog):
    body = b" " * MAX_EVENT_BYTES + PING
    with caplog.at_level(logging.WARNING):
        assert client.post(URL, body, content_type="application/json", **signed(key, body)).status_code == 401
    assert not errors(caplog)


def test_through_the_real_server_a_malformed_timestamp_is_401_with_no_traceback(live_server, key, caplog):
    """Raw HTTP, as any client on the internet sends it: the header's bytes reach the server as they are."""
    parts = urlsplit(live_server.url)
    signature = signed(key, PING)[SIGNATURE]
    with caplog.at_level(logging.WARNING):
        for stamp in ("²".encode("latin-1"), "¹²³".encode("latin-1"), b"1" * 4301, "١٧".encode()):
            connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
            connection.putrequest("POST", URL)
            connection.putheader("Content-Type", "application/json")
            connection.putheader("Content-Length", str(len(PING)))
            connection.putheader("X-Signature-Ed25519", signature)
            connection.putheader("X-Signature-Timestamp", stamp)
            connection.endheaders(PING)
            answer = connection.getresponse()
            answer.read()
            connection.close()
            assert answer.status == 401, stamp[:20]
    assert not errors(caplog)


# The hook on the contract.


def test_the_contract_declares_no_event_headers_by_default():
    assert Connector().event_headers == {}
    assert FakeConnector().event_headers == {}


def test_every_connector_with_events_declares_strict_bounded_ascii_shapes():
    """A pattern with \\d or without a bound would take "٣" or 4,301 digits: every declared one refuses them."""
    with_events = [connector for connector in registry if connector.accepts_events]
    assert with_events, "no registered connector takes events"
    for connector in with_events:
        assert connector.event_headers, f"{connector.name} takes events but declares no signature header"
        for name, pattern in connector.event_headers.items():
            assert isinstance(pattern, re.Pattern), name
            for bad in ("²", "٣", "３", "1" * 4301, "a" * 4301, "", "1\n"):
                assert pattern.fullmatch(bad) is None, f"{connector.name} {name} takes {bad[:20]!r}"


def test_discord_declares_a_timestamp_of_1_to_12_digits_and_a_signature_of_128_hex_characters():
    headers = registry.get(SERVICE_ID).event_headers
    assert set(headers) == {"X-Signature-Ed25519", "X-Signature-Timestamp"}
    stamp, signature = headers["X-Signature-Timestamp"], headers["X-Signature-Ed25519"]
    assert stamp.fullmatch("1") and stamp.fullmatch("9" * 12) and not stamp.fullmatch("9" * 13)
    assert signature.fullmatch("0123456789abcdef" * 8) and signature.fullmatch("ABCDEF0123456789" * 8)
    assert not signature.fullmatch("a" * 127) and not signature.fullmatch("a" * 129)


class Signed(FakeConnector):
    """A connector with events of its own: one signature header, three digits."""

    service_id, provider, name = "test:signed", "signed", "Signedprovider"
    accepts_events = True
    event_headers = {"X-Sig": re.compile(r"[0-9]{1,3}")}

    def __init__(self):
        self.verified = []

    def event_verify(self, headers, body, values):
        self.verified.append(headers["X-Sig"])
        if headers["X-Sig"] != "123":
            raise EventRefused("wrong signature")

    def event_read(self, headers, body):
        return ProviderEvent("ping", name="PING")


@pytest.fixture
def signed_connector(db):
    connector = registry.register(Signed())
    yield connector
    registry.unregister(connector.service_id)


def test_the_core_reads_any_connectors_declared_headers_before_its_verification(client, signed_connector, caplog):
    url = "/webhooks/signed/events"
    with caplog.at_level(logging.WARNING):
        for bad in ("1234", "²", "١", "", " 12"):
            assert client.post(url, b"{}", content_type="application/json", HTTP_X_SIG=bad).status_code == 401
        assert client.post(url, b"{}", content_type="application/json").status_code == 401
        assert signed_connector.verified == []
        assert client.post(url, b"{}", content_type="application/json", HTTP_X_SIG="124").status_code == 401
        assert client.post(url, b"{}", content_type="application/json", HTTP_X_SIG="123").status_code == 204
    assert signed_connector.verified == ["124", "123"]
    assert "Signedprovider event refused: The X-Sig header is missing or malformed." in caplog.messages
    assert not errors(caplog)
