"""Discord's webhook events: the signature's edge cases, and what each event does."""

import json
import logging
import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from django.core import mail
from django.core.exceptions import ValidationError

from connectors.config import config_update
from connectors.models import ConnectedAccount
from connectors.registry import registry
from tests.conftest import SERVICE_ID
from tests.helpers import connect

URL = "/webhooks/discord/events"
discord = registry.get(SERVICE_ID)


@pytest.fixture
def key(standin):
    """A key of the test's own, stored over the one the stand-in's credentials brought."""
    private = Ed25519PrivateKey.generate()
    public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
    config_update(service_id=SERVICE_ID, values={"publicKey": public})
    return private


def signed(private, body, *, stamp=None):
    stamp = str(int(time.time()) if stamp is None else stamp)
    signature = private.sign(stamp.encode() + body).hex()
    return {"HTTP_X_SIGNATURE_ED25519": signature, "HTTP_X_SIGNATURE_TIMESTAMP": stamp}


def event(kind, user_id, **data):
    return json.dumps({
        "version": 1, "application_id": "123456789012345678", "type": 1,
        "event": {"type": kind, "timestamp": "2026-11-29T12:00:00.000000+00:00",
                  "data": {"user": {"id": user_id, "username": "someone"}, **data}},
    }).encode()


def post(client, body, headers):
    return client.post(URL, body, content_type="application/json", **headers)


PING = json.dumps({"version": 1, "application_id": "123456789012345678", "type": 0}).encode()


def test_a_signed_ping_gets_204_with_no_body(client, key):
    answer = post(client, PING, signed(key, PING))
    assert answer.status_code == 204 and answer.content == b""


@pytest.mark.parametrize("spoil", [
    "missing headers", "missing signature", "missing timestamp", "signature not hex",
    "signature too short", "wrong key", "body changed by one byte", "timestamp six minutes old",
    "timestamp six minutes ahead", "timestamp not a number", "signature of another timestamp",
])
def test_anything_not_proven_gets_401_and_changes_nothing(client, key, client_alice, standin, spoil):
    connect(client_alice, standin)
    account = ConnectedAccount.objects.get()
    body = event("APPLICATION_DEAUTHORIZED", account.uid)
    headers = signed(key, body)
    if spoil == "missing headers":
        headers = {}
    elif spoil == "missing signature":
        del headers["HTTP_X_SIGNATURE_ED25519"]
    elif spoil == "missing timestamp":
        del headers["HTTP_X_SIGNATURE_TIMESTAMP"]
    elif spoil == "signature not hex":
        headers["HTTP_X_SIGNATURE_ED25519"] = "zz" + headers["HTTP_X_SIGNATURE_ED25519"][2:]
    elif spoil == "signature too short":
        headers["HTTP_X_SIGNATURE_ED25519"] = headers["HTTP_X_SIGNATURE_ED25519"][:-2]
    elif spoil == "wrong key":
        headers = signed(Ed25519PrivateKey.generate(), body)
    elif spoil == "body changed by one byte":
        body = body[:-2] + b" }"
    elif spoil == "timestamp six minutes old":
        headers = signed(key, body, stamp=int(time.time()) - 360)
    elif spoil == "timestamp six minutes ahead":
        headers = signed(key, body, stamp=int(time.time()) + 360)
    elif spoil == "timestamp not a number":
        headers["HTTP_X_SIGNATURE_TIMESTAMP"] = "soon"
    elif spoil == "signature of another timestamp":
        headers["HTTP_X_SIGNATURE_TIMESTAMP"] = str(int(headers["HTTP_X_SIGNATURE_TIMESTAMP"]) - 1)
    assert post(client, body, headers).status_code == 401
    assert ConnectedAccount.objects.get().status == ConnectedAccount.Status.ACTIVE


def test_without_a_stored_public_key_every_event_is_refused(client, configured):
    private = Ed25519PrivateKey.generate()
    assert post(client, PING, signed(private, PING)).status_code == 401


def test_deauthorized_marks_that_users_accounts_at_once_and_the_page_offers_reconnect(
    client, key, alice, client_alice, standin, caplog, django_capture_on_commit_callbacks
):
    alice.email = "alice@example.com"
    alice.save()
    connect(client_alice, standin)
    account = ConnectedAccount.objects.get()
    body = event("APPLICATION_DEAUTHORIZED", account.uid)
    with caplog.at_level(logging.INFO, logger="connectors"), django_capture_on_commit_callbacks(execute=True):
        assert post(client, body, signed(key, body)).status_code == 204
    account.refresh_from_db()
    assert account.status == ConnectedAccount.Status.NEEDS_RECONNECT
    assert account.status_reason == "The app was removed at Discord. Reconnect the account to use it again."
    page = client_alice.get("/accounts/").content.decode()
    assert "Reconnect</a>" in page and "The app was removed at Discord" in page
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["alice@example.com"]
    # The same event again (Discord retries) changes nothing and mails nobody.
    with django_capture_on_commit_callbacks(execute=True):
        assert post(client, body, signed(key, body)).status_code == 204
    assert len(mail.outbox) == 1
    assert any("APPLICATION_DEAUTHORIZED: 1 account(s) now need a reconnect" in r.message for r in caplog.records)


def test_another_users_removal_leaves_the_account_alone(client, key, client_alice, standin):
    connect(client_alice, standin)
    body = event("APPLICATION_DEAUTHORIZED", "999999999999999999")
    assert post(client, body, signed(key, body)).status_code == 204
    assert ConnectedAccount.objects.get().status == ConnectedAccount.Status.ACTIVE


def test_authorized_is_recorded_and_unknown_events_are_ignored(client, key, caplog):
    authorized = event("APPLICATION_AUTHORIZED", "80351110224678912", scopes=["identify"], integration_type=0)
    unknown = event("ENTITLEMENT_CREATE", "80351110224678912")
    with caplog.at_level(logging.INFO, logger="connectors"):
        assert post(client, authorized, signed(key, authorized)).status_code == 204
        assert post(client, unknown, signed(key, unknown)).status_code == 204
    messages = [record.message for record in caplog.records]
    assert "Discord event APPLICATION_AUTHORIZED for user(s) 80351110224678912 recorded" in messages
    assert "Discord event ENTITLEMENT_CREATE ignored" in messages


def test_only_post_and_only_a_provider_that_sends_events(client, key, fake_connector):
    assert client.get(URL).status_code == 405
    assert client.post("/webhooks/fake/events", PING, content_type="application/json").status_code == 404
    assert client.post("/webhooks/nowhere/events", PING, content_type="application/json").status_code == 404


def test_the_public_key_is_64_hex_characters():
    field = discord.field("publicKey")
    assert field.normalise(" " + "AB" * 32 + "\n") == "ab" * 32
    for bad in ("ab" * 31, "ab" * 32 + "0", "g" * 64, "Bot " + "ab" * 32):
        with pytest.raises(ValidationError, match="64 hexadecimal characters"):
            field.normalise(bad)
