"""Signals other code can rely on, and the mail that tells a user to reconnect."""

import logging

import pytest
from django.core import mail
from django.db import transaction
from django.utils import timezone

from connectors.exceptions import NeedsReconnect
from connectors.models import ConnectedAccount
from connectors.signals import account_connected, account_disconnected, account_needs_reconnect
from connectors.tokens import account_check, fresh_access_token
from tests.helpers import connect, revoke_at_standin


@pytest.fixture
def heard():
    """Every signal received, as (signal name, kwargs)."""
    received = []
    receivers = {}
    for name, signal in (("connected", account_connected), ("needs_reconnect", account_needs_reconnect),
                         ("disconnected", account_disconnected)):
        receivers[name] = lambda sender, name=name, **kwargs: received.append((name, kwargs))
        signal.connect(receivers[name], weak=False)
    yield received
    for name, signal in (("connected", account_connected), ("needs_reconnect", account_needs_reconnect),
                         ("disconnected", account_disconnected)):
        signal.disconnect(receivers[name])


@pytest.fixture
def alice_mail(alice):
    alice.email = "alice@example.com"
    alice.save()
    return alice


def remove_app_and_refresh(standin, account):
    revoke_at_standin(standin, account.refresh_token)
    ConnectedAccount.objects.filter(pk=account.pk).update(expires_at=timezone.now())
    with pytest.raises(NeedsReconnect):
        fresh_access_token(account)


def test_connect_reconnect_and_disconnect_each_send_one_signal_after_the_commit(
    client_alice, standin, heard, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        connect(client_alice, standin)
    account = ConnectedAccount.objects.get()
    assert [(name, kwargs["account"].pk, kwargs["created"]) for name, kwargs in heard] == [
        ("connected", account.pk, True)
    ]
    with django_capture_on_commit_callbacks(execute=True):
        connect(client_alice, standin)
    assert [(name, kwargs["created"]) for name, kwargs in heard] == [("connected", True), ("connected", False)]
    with django_capture_on_commit_callbacks(execute=True):
        client_alice.post(f"/accounts/{account.pk}/disconnect")
    name, kwargs = heard[-1]
    assert (name, kwargs["account_id"], kwargs["account"].uid, kwargs["connector"].name) == (
        "disconnected", account.pk, account.uid, "Discord"
    )
    assert len(heard) == 3


def test_nothing_is_sent_for_a_change_that_rolled_back(client_alice, standin, heard, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with pytest.raises(RuntimeError), transaction.atomic():
            connect(client_alice, standin)
            raise RuntimeError("the caller's transaction fails")
    assert callbacks == [] and heard == []


def test_a_needed_reconnect_is_signalled_and_mailed_once_until_the_account_is_reconnected(
    client_alice, alice_mail, standin, heard, django_capture_on_commit_callbacks
):
    connect(client_alice, standin)
    account = ConnectedAccount.objects.get()
    with django_capture_on_commit_callbacks(execute=True):
        remove_app_and_refresh(standin, account)
        with pytest.raises(NeedsReconnect):
            fresh_access_token(account)
    assert [name for name, _ in heard] == ["needs_reconnect"]
    assert heard[0][1]["reason"] == account.connector.reconnect_reason
    assert len(mail.outbox) == 1
    sent = mail.outbox[0]
    assert sent.to == ["alice@example.com"]
    assert sent.subject == "Reconnect your Discord account Stand-in User"
    assert "https://backoffice.example.com/accounts/" in sent.body
    assert "Stand-in User" in sent.body and "no longer accepts" in sent.body
    stored = ConnectedAccount.objects.get()
    assert stored.access_token not in sent.body and stored.refresh_token not in sent.body

    with django_capture_on_commit_callbacks(execute=True):
        connect(client_alice, standin)
        remove_app_and_refresh(standin, ConnectedAccount.objects.get())
    assert len(mail.outbox) == 2
    assert [name for name, _ in heard] == ["needs_reconnect", "connected", "needs_reconnect"]


def test_a_grant_check_that_the_provider_refuses_marks_the_account_and_mails(
    client_alice, alice_mail, standin, django_capture_on_commit_callbacks
):
    connect(client_alice, standin)
    account = ConnectedAccount.objects.get()
    revoke_at_standin(standin, account.refresh_token)
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(NeedsReconnect):
        account_check(account)
    assert ConnectedAccount.objects.get().status == ConnectedAccount.Status.NEEDS_RECONNECT
    assert len(mail.outbox) == 1


def test_a_mail_failure_is_logged_and_the_refresh_goes_on(
    client_alice, alice_mail, standin, settings, caplog, django_capture_on_commit_callbacks
):
    settings.EMAIL_BACKEND = "tests.helpers.FailingMailBackend"
    connect(client_alice, standin)
    account = ConnectedAccount.objects.get()
    with caplog.at_level(logging.INFO, logger="connectors"), django_capture_on_commit_callbacks(execute=True):
        remove_app_and_refresh(standin, account)
    assert ConnectedAccount.objects.get().status == ConnectedAccount.Status.NEEDS_RECONNECT
    assert f"could not email the user of account {account.pk} (SMTPException)" in caplog.text


def test_a_receiver_that_fails_never_fails_the_callback(client_alice, standin, caplog, django_capture_on_commit_callbacks):
    def broken(sender, **kwargs):
        raise ValueError("a bug in someone else's receiver")

    account_connected.connect(broken)
    try:
        with caplog.at_level(logging.ERROR, logger="connectors"), django_capture_on_commit_callbacks(execute=True):
            answer = connect(client_alice, standin)
    finally:
        account_connected.disconnect(broken)
    assert answer.status_code == 302 and ConnectedAccount.objects.count() == 1
    assert "a receiver of a connectors signal, failed (ValueError)" in caplog.text


def test_a_user_without_an_address_gets_no_mail(client_alice, standin, django_capture_on_commit_callbacks):
    connect(client_alice, standin)
    with django_capture_on_commit_callbacks(execute=True):
        remove_app_and_refresh(standin, ConnectedAccount.objects.get())
    assert mail.outbox == []
