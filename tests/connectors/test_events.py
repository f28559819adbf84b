"""Discord's webhook events: the signature's edge cases, and what each event does."""

import hashlib
import json
import logging
import threading
import time
import urllib.request
from datetime import datetime, timedelta, timezone

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from django.core import mail
from django.core.exceptions import ValidationError
from django.db import connection, connections
from django.test import Client
from django.test.utils import CaptureQueriesContext

from connectors import events
from connectors.base import Connector, ProviderEvent
from connectors.config import config_update
from connectors.events import EVENT_MEMORY, deliveries_forget, delivery_key, event_take
from connectors.models import ConnectedAccount, EventDelivery
from connectors.registry import registry
from connectors.signals import account_needs_reconnect
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


def event(kind, user_id, *, at=None, **data):
    """A delivery's body as Discord shapes it; ``at`` is its ``event.timestamp`` (now by default, "" for none)."""
    at = datetime.now(timezone.utc) if at is None else at
    body = {"type": kind, "data": {"user": {"id": user_id, "username": "someone"}, **data}}
    if at != "":
        body["timestamp"] = at if isinstance(at, str) else at.isoformat(timespec="microseconds")
    return json.dumps({"version": 1, "application_id": "123456789012345678", "type": 1, "event": body}).encode()


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


# Each delivery is taken once; an event older than the account's last connect leaves it alone.


@pytest.fixture
def alice_mail(alice):
    alice.email = "alice@example.com"
    alice.save()
    return alice


@pytest.fixture
def marks():
    """Every account_needs_reconnect sent, as the account's pk."""
    received = []

    def receiver(sender, account, **kwargs):
        received.append(account.pk)

    account_needs_reconnect.connect(receiver, weak=False)
    yield received
    account_needs_reconnect.disconnect(receiver)


def standin_signed(standin, body, *, stamp=None):
    """The headers the stand-in puts on a delivery of ``body``, as the test client sends them."""
    headers = standin.sign(body, stamp)
    return {"HTTP_" + name.upper().replace("-", "_"): value for name, value in headers.items()}


def taken_already(caplog):
    return [r.message for r in caplog.records if "taken already" in r.message]


def test_an_identical_delivery_twice_answers_204_both_times_and_is_taken_once(
    client, client_alice, alice_mail, standin, marks, caplog, django_capture_on_commit_callbacks
):
    connect(client_alice, standin)
    account = ConnectedAccount.objects.get()
    body = event("APPLICATION_DEAUTHORIZED", account.uid)
    headers = standin_signed(standin, body)
    with caplog.at_level(logging.INFO, logger="connectors"), django_capture_on_commit_callbacks(execute=True):
        assert post(client, body, headers).status_code == 204
        account.refresh_from_db()
        assert account.status == ConnectedAccount.Status.NEEDS_RECONNECT
        assert account.marked_by == ConnectedAccount.MarkedBy.EVENT
        changed_at = account.status_changed_at
        assert post(client, body, headers).status_code == 204
    account.refresh_from_db()
    assert account.status_changed_at == changed_at
    assert marks == [account.pk] and len(mail.outbox) == 1
    assert EventDelivery.objects.count() == 1
    (said,) = taken_already(caplog)
    assert said.startswith("Discord event APPLICATION_DEAUTHORIZED taken already")
    # The delivery, not the account's status, is what stops it: the same
    # delivery against an active account still changes nothing.
    ConnectedAccount.objects.update(status=ConnectedAccount.Status.ACTIVE, status_reason="")
    with django_capture_on_commit_callbacks(execute=True):
        assert post(client, body, headers).status_code == 204
    assert ConnectedAccount.objects.get().status == ConnectedAccount.Status.ACTIVE
    assert marks == [account.pk] and len(mail.outbox) == 1


def test_the_signature_in_capitals_is_the_same_delivery(client, client_alice, standin, marks):
    connect(client_alice, standin)
    account = ConnectedAccount.objects.get()
    body = event("APPLICATION_DEAUTHORIZED", account.uid)
    headers = standin_signed(standin, body)
    assert post(client, body, headers).status_code == 204
    ConnectedAccount.objects.update(status=ConnectedAccount.Status.ACTIVE)
    shouted = {**headers, "HTTP_X_SIGNATURE_ED25519": headers["HTTP_X_SIGNATURE_ED25519"].upper()}
    assert post(client, body, shouted).status_code == 204
    assert ConnectedAccount.objects.get().status == ConnectedAccount.Status.ACTIVE
    assert EventDelivery.objects.count() == 1


@pytest.fixture
def site(live_server, standin, transactional_db):
    """This site on a live server, where the stand-in sends its events."""
    standin.app.event_webhooks_url = f"{live_server.url}{URL}"
    return live_server.url


@pytest.fixture
def sent(monkeypatch):
    """Every delivery the stand-in made, as (url, body, headers), in order."""
    real = urllib.request.urlopen
    made = []

    def urlopen(request, *args, **kwargs):
        if isinstance(request, urllib.request.Request) and request.full_url.endswith(URL):
            made.append((request.full_url, request.data, dict(request.header_items())))
        return real(request, *args, **kwargs)

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    return made


def test_a_removal_replayed_after_the_reconnect_leaves_the_fresh_account_alone(
    site, standin, sent, alice_mail, marks, caplog
):
    """The issue: the same signed APPLICATION_DEAUTHORIZED posted again within five minutes of the
    reconnect answered 204, marked the account again and mailed its user a second time."""
    client_alice = Client()
    client_alice.force_login(alice_mail)
    connect(client_alice, standin)
    account = ConnectedAccount.objects.get()
    assert standin.remove_app(account.uid) == (1, 204)
    account.refresh_from_db()
    assert account.status == ConnectedAccount.Status.NEEDS_RECONNECT
    assert len(mail.outbox) == 1

    connect(client_alice, standin)
    account.refresh_from_db()
    assert account.status == ConnectedAccount.Status.ACTIVE

    ((url, body, headers),) = [made for made in sent if b'"APPLICATION_DEAUTHORIZED"' in made[1]]
    with caplog.at_level(logging.INFO, logger="connectors"):
        answer = requests.post(url, data=body, headers=headers, timeout=5)
    assert answer.status_code == 204
    account.refresh_from_db()
    assert account.status == ConnectedAccount.Status.ACTIVE and account.status_reason == ""
    assert len(mail.outbox) == 1 and marks == [account.pk]
    assert len(taken_already(caplog)) == 1


def test_an_event_older_than_the_reconnect_leaves_the_account_alone(
    client, client_alice, alice_mail, standin, marks, caplog, django_capture_on_commit_callbacks
):
    connect(client_alice, standin)
    account = ConnectedAccount.objects.get()
    removed_at = datetime.now(timezone.utc)
    body = event("APPLICATION_DEAUTHORIZED", account.uid, at=removed_at)
    with django_capture_on_commit_callbacks(execute=True):
        assert post(client, body, standin_signed(standin, body)).status_code == 204
    assert len(mail.outbox) == 1
    connect(client_alice, standin)
    account.refresh_from_db()
    assert account.status == ConnectedAccount.Status.ACTIVE and account.connected_at > removed_at

    # Discord delivers the same event again, signed anew: another delivery, about a grant that is gone.
    retry = standin_signed(standin, body, stamp=int(time.time()) - 1)
    with caplog.at_level(logging.INFO, logger="connectors"), django_capture_on_commit_callbacks(execute=True):
        assert post(client, body, retry).status_code == 204
    account.refresh_from_db()
    assert account.status == ConnectedAccount.Status.ACTIVE
    assert len(mail.outbox) == 1 and marks == [account.pk]
    assert taken_already(caplog) == [] and EventDelivery.objects.count() == 2
    assert f"Discord account {account.uid} of user {account.user_id} left as it is: event older than the " \
           "connection" in [r.message for r in caplog.records]
    # A removal after the reconnect marks it.
    later = event("APPLICATION_DEAUTHORIZED", account.uid)
    assert post(client, later, standin_signed(standin, later)).status_code == 204
    assert ConnectedAccount.objects.get().status == ConnectedAccount.Status.NEEDS_RECONNECT


def test_without_the_bodys_timestamp_the_signed_headers_time_counts(client, client_alice, standin):
    connect(client_alice, standin)
    account = ConnectedAccount.objects.get()
    body = event("APPLICATION_DEAUTHORIZED", account.uid, at="")
    stale = int(account.connected_at.timestamp()) - 2
    assert post(client, body, standin_signed(standin, body, stamp=stale)).status_code == 204
    assert ConnectedAccount.objects.get().status == ConnectedAccount.Status.ACTIVE
    fresh = int(time.time()) + 1
    assert post(client, body, standin_signed(standin, body, stamp=fresh)).status_code == 204
    assert ConnectedAccount.objects.get().status == ConnectedAccount.Status.NEEDS_RECONNECT


def test_connect_and_reconnect_set_connected_at_and_an_older_row_counts_from_its_creation(
    client, client_alice, standin
):
    before = datetime.now(timezone.utc)
    connect(client_alice, standin)
    account = ConnectedAccount.objects.get()
    first, created_at = account.connected_at, account.created_at
    assert first >= before and first == account.status_changed_at
    connect(client_alice, standin)
    account.refresh_from_db()
    assert account.connected_at > first and account.created_at == created_at

    # A row from before connected_at existed: its creation stands for it.
    ConnectedAccount.objects.update(connected_at=None)
    older = event("APPLICATION_DEAUTHORIZED", account.uid, at=account.created_at - timedelta(seconds=1))
    assert post(client, older, standin_signed(standin, older)).status_code == 204
    assert ConnectedAccount.objects.get().status == ConnectedAccount.Status.ACTIVE
    newer = event("APPLICATION_DEAUTHORIZED", account.uid, at=account.created_at + timedelta(seconds=1))
    assert post(client, newer, standin_signed(standin, newer)).status_code == 204
    assert ConnectedAccount.objects.get().status == ConnectedAccount.Status.NEEDS_RECONNECT


def test_a_delivery_is_forgotten_ten_minutes_after_it_was_taken(standin, caplog):
    def delivery(stamp):
        return {"X-Signature-Ed25519": standin.sign(PING, stamp)["X-Signature-Ed25519"],
                "X-Signature-Timestamp": str(stamp)}

    def take(headers, at):
        event_take(connector=discord, headers=headers, body=PING, now=t0 + at)

    def remembered():
        return sorted(EventDelivery.objects.values_list("received_at", flat=True))

    t0 = datetime(2026, 12, 6, 8, 0, tzinfo=timezone.utc)
    now = int(time.time())
    first, second, third = delivery(now), delivery(now - 1), delivery(now - 2)
    take(first, timedelta(0))
    take(second, timedelta(minutes=9))
    assert remembered() == [t0, t0 + timedelta(minutes=9)]
    with caplog.at_level(logging.INFO, logger="connectors"):
        take(first, EVENT_MEMORY)
    assert len(taken_already(caplog)) == 1 and remembered() == [t0, t0 + timedelta(minutes=9)]

    take(third, EVENT_MEMORY + timedelta(seconds=1))
    assert remembered() == [t0 + timedelta(minutes=9), t0 + EVENT_MEMORY + timedelta(seconds=1)]
    # Forgotten, the first would be taken afresh (its signature is stale by then, in truth).
    take(first, EVENT_MEMORY + timedelta(seconds=2))
    assert len(taken_already(caplog)) == 1 and len(remembered()) == 3


def test_forgetting_is_one_delete(standin):
    old = datetime(2026, 1, 1, tzinfo=timezone.utc)
    EventDelivery.objects.create(service_id=SERVICE_ID, key="old", received_at=old)
    with CaptureQueriesContext(connection) as queries:
        assert deliveries_forget(now=datetime.now(timezone.utc)) == 1
    statements = [q["sql"].split()[0].upper() for q in queries.captured_queries]
    assert statements.count("DELETE") == 1 and "SELECT" not in statements
    assert not EventDelivery.objects.exists()


@pytest.mark.skipif(
    connection.vendor == "sqlite",
    reason="the tests' SQLite is in memory with a shared cache, where a second connection's write fails at "
    "once (database table is locked) instead of waiting; runs in CI's PostgreSQL pass",
)
def test_two_identical_deliveries_at_once_are_taken_once(
    transactional_db, standin, alice_mail, marks, monkeypatch, caplog
):
    client_alice = Client()
    client_alice.force_login(alice_mail)
    connect(client_alice, standin)
    account = ConnectedAccount.objects.get()
    body = event("APPLICATION_DEAUTHORIZED", account.uid)
    headers = standin_signed(standin, body)
    # The first to act takes a while, so that the other arrives meanwhile.
    acted, real = [], events.accounts_removed_at_provider

    def slow(**kwargs):
        acted.append(kwargs["uids"])
        time.sleep(0.3)
        return real(**kwargs)

    monkeypatch.setattr(events, "accounts_removed_at_provider", slow)
    barrier, answers, errors = threading.Barrier(2), [], []

    def deliver():
        try:
            mine = Client()
            barrier.wait(timeout=10)
            answers.append(post(mine, body, headers).status_code)
        except Exception as error:  # noqa: BLE001 (reported below)
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    with caplog.at_level(logging.INFO, logger="connectors"):
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    assert errors == [] and answers == [204, 204]
    assert acted == [(account.uid,)]
    assert ConnectedAccount.objects.get().status == ConnectedAccount.Status.NEEDS_RECONNECT
    assert marks == [account.pk] and len(mail.outbox) == 1
    assert EventDelivery.objects.count() == 1 and len(taken_already(caplog)) == 1


# The contract's defaults, and Discord's reading of an event's time.


class Plain(Connector):
    service_id, provider, name = "test:plain", "plain", "Plain"


def test_the_default_key_is_the_event_id_else_the_signature_header_else_the_body():
    connector = Plain()
    headers = {"X-Sig": "abc"}
    assert connector.event_key(headers, b"{}", ProviderEvent("other", id="evt-1")) == "evt-1"
    assert connector.event_key(headers, b"{}", ProviderEvent("other")) == hashlib.sha256(b"{}").hexdigest()
    connector.event_signature_header = "X-Sig"
    assert connector.event_key(headers, b"{}", ProviderEvent("other")) == hashlib.sha256(b"abc").hexdigest()
    assert delivery_key("k" * 128) == "k" * 128
    assert delivery_key("k" * 129) == hashlib.sha256(b"k" * 129).hexdigest()


def test_discords_key_is_the_sha256_of_the_signatures_bytes():
    signature = "ab" * 64
    expected = hashlib.sha256(bytes.fromhex(signature)).hexdigest()
    for written in (signature, signature.upper()):
        assert discord.event_key({"X-Signature-Ed25519": written}, b"{}", ProviderEvent("other")) == expected


@pytest.mark.parametrize("timestamp, expected", [
    ("2026-11-29T12:00:00.250000+00:00", datetime(2026, 11, 29, 12, 0, 0, 250000, tzinfo=timezone.utc)),
    ("2026-11-29T13:00:00+01:00", datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc)),
    ("2026-11-29T12:00:00Z", datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc)),
    ("2026-11-29T12:00:00", datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc)),
    ("", datetime(2026, 12, 1, tzinfo=timezone.utc)),
    ("yesterday", datetime(2026, 12, 1, tzinfo=timezone.utc)),
])
def test_discords_event_time_is_the_bodys_timestamp_else_the_signed_headers(timestamp, expected):
    signed_at = {"X-Signature-Timestamp": str(int(datetime(2026, 12, 1, tzinfo=timezone.utc).timestamp()))}
    read = discord.event_read(signed_at, event("APPLICATION_DEAUTHORIZED", "80351110224678912", at=timestamp))
    assert read.kind == "removed" and read.id is None
    assert read.time == expected and read.time.tzinfo is not None
    assert discord.event_read(signed_at, PING).time == datetime(2026, 12, 1, tzinfo=timezone.utc)
