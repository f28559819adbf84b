"""Grants we obtained but could not store: revoked at once, else kept and revoked again by refresh_tokens."""

import logging
import threading
from datetime import timedelta
from io import StringIO

import pytest
import redis.exceptions
from django.core.cache import caches
from django.core.management import CommandError, call_command
from django.db import OperationalError, connection, connections, transaction
from django.utils import timezone

from connectors.flow import UNSTORED
from connectors.models import ConnectedAccount, PendingRevocation
from connectors.registry import registry
from connectors.revocations import (
    PENDING_REVOCATION_FOR,
    RetrySummary,
    grant_revoke_unstored,
    revocations_retry,
)
from tests.conftest import SERVICE_ID
from tests.helpers import decide, finish, postgres_only, standin_tokens, start

LIST = "/admin/connectors/pendingrevocation/"


@pytest.fixture
def discord():
    return registry.get(SERVICE_ID)


@pytest.fixture
def logs(caplog):
    caplog.set_level(logging.INFO, logger="connectors")
    return caplog


def records(caplog):
    """This test's log records, its fixtures' included."""
    return caplog.get_records("setup") + caplog.records


def log_text(caplog):
    return "\n".join(r.getMessage() for r in records(caplog))


def leaked_lines(caplog):
    return [r for r in records(caplog) if r.getMessage().startswith("LEAKED:")]


def alive(standin, tokens):
    return standin.access_token_valid(tokens["access_token"]) or standin.refresh_token_valid(tokens["refresh_token"])


def raw_tokens():
    """The token columns as the database holds them, read with SQL."""
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {quote('access_token')}, {quote('refresh_token')} "
            f"FROM {quote(PendingRevocation._meta.db_table)}"
        )
        return cursor.fetchall()


@pytest.fixture
def kept(standin, discord, logs):
    """A grant whose revocation Discord failed: kept, with the person's uid."""
    tokens = standin_tokens(standin)
    standin.fail_next("revoke", 500)
    assert not grant_revoke_unstored(connector=discord, tokens=tokens, uid=standin.logged_in.id, what=UNSTORED)
    return tokens


def test_a_grant_that_can_be_revoked_is_revoked_at_once_and_nothing_is_kept(standin, discord, logs):
    tokens = standin_tokens(standin)
    assert alive(standin, tokens)

    assert grant_revoke_unstored(connector=discord, tokens=tokens, uid=standin.logged_in.id, what=UNSTORED)

    assert not alive(standin, tokens)
    assert not PendingRevocation.objects.exists()
    assert not leaked_lines(logs)
    assert f"revoked {UNSTORED} at Discord" in log_text(logs)


def test_a_failed_revocation_is_kept_encrypted_and_logged_once_without_a_token(standin, kept, logs):
    row = PendingRevocation.objects.get()
    assert (row.service_id, row.uid, row.what, row.attempts) == (SERVICE_ID, standin.logged_in.id, UNSTORED, 1)
    assert (row.access_token, row.refresh_token) == (kept["access_token"], kept["refresh_token"])
    assert row.last_error and kept["access_token"] not in row.last_error
    ((raw_access, raw_refresh),) = raw_tokens()
    assert kept["access_token"] not in raw_access and kept["refresh_token"] not in raw_refresh
    (line,) = leaked_lines(logs)
    assert line.levelno == logging.ERROR
    message = line.getMessage()
    assert f"Discord user {standin.logged_in.id} could not be revoked" in message
    assert message.endswith("kept to revoke again for 24 hours")
    assert kept["access_token"] not in log_text(logs) and kept["refresh_token"] not in log_text(logs)
    assert alive(standin, kept)


def test_refresh_tokens_revokes_what_was_kept(standin, kept, logs):
    out = StringIO()

    call_command("refresh_tokens", stdout=out)

    assert not alive(standin, kept)
    assert not PendingRevocation.objects.exists()
    assert "pending revocations: 1 revoked, 0 still pending, 0 given up" in out.getvalue().splitlines()


def test_a_second_failure_keeps_the_row_and_notes_it(standin, kept):
    standin.fail_next("revoke", 500)

    summary = revocations_retry()

    assert summary == RetrySummary(revoked=0, pending=1, given_up=0)
    row = PendingRevocation.objects.get()
    assert row.attempts == 2 and row.last_attempt_at is not None
    assert "Discord" in row.last_error and kept["refresh_token"] not in row.last_error
    assert alive(standin, kept)


def test_dry_run_says_how_many_are_pending_and_tries_none(standin, kept):
    out = StringIO()

    call_command("refresh_tokens", "--dry-run", stdout=out)

    assert "pending revocations: 1 (dry run: none tried)" in out.getvalue()
    assert PendingRevocation.objects.count() == 1 and alive(standin, kept)


def test_a_row_older_than_24_hours_that_fails_again_is_given_up_and_the_run_fails(standin, kept, logs):
    PendingRevocation.objects.update(created_at=timezone.now() - PENDING_REVOCATION_FOR - timedelta(minutes=1))
    standin.fail_next("revoke", 500)
    out = StringIO()

    with pytest.raises(CommandError, match=r"Gave up revoking 1 grant\(s\).*LEAKED"):
        call_command("refresh_tokens", stdout=out)

    assert "pending revocations: 0 revoked, 0 still pending, 1 given up" in out.getvalue()
    # The sweep ran before the run failed.
    assert out.getvalue().strip().splitlines()[-1].startswith("refreshed 0")
    assert not PendingRevocation.objects.exists()
    gave_up = [r.getMessage() for r in leaked_lines(logs) if "gave up" in r.getMessage()]
    assert len(gave_up) == 1 and "Discord" in gave_up[0] and standin.logged_in.id in gave_up[0]
    assert kept["access_token"] not in log_text(logs) and kept["refresh_token"] not in log_text(logs)


def test_a_row_older_than_24_hours_that_works_is_still_revoked(standin, kept):
    later = timezone.now() + PENDING_REVOCATION_FOR + timedelta(hours=1)

    assert revocations_retry(now=later) == RetrySummary(revoked=1)
    assert not alive(standin, kept)


def test_a_row_no_connector_can_revoke_is_given_up(standin, kept, logs):
    PendingRevocation.objects.update(service_id="gone:provider")

    assert revocations_retry() == RetrySummary(given_up=1)
    assert not PendingRevocation.objects.exists()
    assert any("gone:provider" in r.getMessage() and "gave up" in r.getMessage() for r in leaked_lines(logs))


def test_a_provider_without_revocation_is_logged_as_leaked_and_nothing_is_kept(fake_connector, standin, logs):
    tokens = standin_tokens(standin)

    assert not grant_revoke_unstored(connector=fake_connector, tokens=tokens, uid="", values={}, what=UNSTORED)

    (line,) = leaked_lines(logs)
    assert "Fakeprovider for an unknown user" in line.getMessage()
    assert "offers no revocation" in line.getMessage()
    assert not PendingRevocation.objects.exists()


def test_unreadable_values_count_as_a_failed_revocation(standin, discord, logs, monkeypatch):
    tokens = standin_tokens(standin)

    def unreadable(service_id):
        raise OperationalError("the database went away")

    monkeypatch.setattr("connectors.revocations.config_values", unreadable)

    assert not grant_revoke_unstored(connector=discord, tokens=tokens, uid="42", what=UNSTORED)
    assert PendingRevocation.objects.get().last_error == "OperationalError"
    assert len(leaked_lines(logs)) == 1


def test_a_grant_that_can_be_neither_revoked_nor_kept_says_so(standin, discord, logs, monkeypatch, settings):
    settings.TOKEN_STORE_RETRY_FOR = 0
    tokens = standin_tokens(standin)
    standin.fail_next("revoke", 500)

    def broken(**fields):
        raise OperationalError("the database went away")

    monkeypatch.setattr(PendingRevocation.objects, "create", broken)

    assert not grant_revoke_unstored(connector=discord, tokens=tokens, uid="42", what=UNSTORED)
    (line,) = leaked_lines(logs)
    assert "could not be revoked nor kept" in line.getMessage() and "OperationalError" in line.getMessage()
    assert tokens["access_token"] not in log_text(logs)


def test_a_dead_cache_does_not_stop_the_revocation(standin, discord, monkeypatch):
    tokens = standin_tokens(standin)

    def down(*args, **kwargs):
        raise redis.exceptions.ConnectionError("Error 111 connecting to cache:6379. Connection refused.")

    cache = caches["default"]
    for method in ("get", "get_many", "add", "set", "set_many", "delete", "incr"):
        monkeypatch.setattr(cache, method, down)
    before = standin.count("revoke")

    # The pace is skipped: the revocation reaches Discord.
    assert grant_revoke_unstored(connector=discord, tokens=tokens, uid="42", what=UNSTORED)
    assert standin.count("revoke") == before + 1
    assert not alive(standin, tokens)
    assert not PendingRevocation.objects.exists()


# The admin


def test_the_admin_lists_pending_revocations_and_never_their_tokens(admin_client, standin, kept):
    row = PendingRevocation.objects.get()

    page = admin_client.get(LIST)

    html = page.content.decode()
    assert page.status_code == 200
    assert "Pending revocations" in html
    assert "they are revoked again on every refresh_tokens run for 24 hours" in html
    assert standin.logged_in.id in html and UNSTORED in html and "Try to revoke again now" in html
    detail = admin_client.get(f"{LIST}{row.pk}/change/")
    assert detail.status_code == 200
    for shown in (html, detail.content.decode()):
        assert kept["access_token"] not in shown and kept["refresh_token"] not in shown
    assert admin_client.get(f"{LIST}add/").status_code == 403


def test_the_admin_action_revokes_the_selected_rows(admin_client, standin, kept):
    row = PendingRevocation.objects.get()

    page = admin_client.post(LIST, {"action": "retry_now", "_selected_action": [row.pk]}, follow=True)

    assert page.status_code == 200 and "revoked." in page.content.decode()
    assert not alive(standin, kept)
    assert not PendingRevocation.objects.exists()


def test_deleting_a_row_in_the_admin_gives_it_up_on_record(admin_client, standin, kept, logs):
    row = PendingRevocation.objects.get()

    admin_client.post(f"{LIST}{row.pk}/delete/", {"post": "yes"})

    assert not PendingRevocation.objects.exists()
    assert any("deleted in the admin by admin" in r.getMessage() for r in leaked_lines(logs))


# The connect flow


def live_grants(standin):
    return [grant for grant in standin.grants if grant.user.id == standin.logged_in.id]


def failing_connect(**kwargs):
    raise OperationalError("server closed the connection unexpectedly")


def test_a_callback_whose_database_fails_leaves_no_live_grant(client_alice, standin, monkeypatch):
    callback = decide(standin, start(client_alice))
    client_alice.raise_request_exception = False

    monkeypatch.setattr("connectors.flow.account_connect", failing_connect)

    assert finish(client_alice, callback).status_code >= 500
    assert live_grants(standin) == []
    assert not PendingRevocation.objects.exists() and not ConnectedAccount.objects.exists()


def test_a_callback_whose_revocation_fails_too_keeps_the_grant_with_its_uid(client_alice, standin, monkeypatch):
    callback = decide(standin, start(client_alice))
    client_alice.raise_request_exception = False
    monkeypatch.setattr("connectors.flow.account_connect", failing_connect)
    standin.fail_next("revoke", 500)

    assert finish(client_alice, callback).status_code >= 500

    row = PendingRevocation.objects.get()
    assert row.uid == standin.logged_in.id
    assert revocations_retry() == RetrySummary(revoked=1)
    assert live_grants(standin) == []


def test_any_error_once_the_token_answer_arrived_still_revokes_the_grant(client_alice, standin, monkeypatch):
    """Not a ProviderError: the cache failing while the answer was being read."""
    callback = decide(standin, start(client_alice))
    client_alice.raise_request_exception = False

    def cache_down(connector, response):
        raise redis.exceptions.ConnectionError("Connection refused.")

    monkeypatch.setattr("connectors.oauth._take_answer", cache_down)

    assert finish(client_alice, callback).status_code >= 500
    assert live_grants(standin) == []


# Two cron hosts


@postgres_only
@pytest.mark.django_db(transaction=True, databases="__all__")
def test_a_row_another_run_holds_is_skipped(standin, discord):
    tokens = standin_tokens(standin)
    standin.fail_next("revoke", 500)
    grant_revoke_unstored(connector=discord, tokens=tokens, uid="42", what=UNSTORED)
    held, release = threading.Event(), threading.Event()

    def other_run():
        try:
            with transaction.atomic():
                PendingRevocation.objects.select_for_update().get()
                held.set()
                release.wait(10)
        finally:
            connections.close_all()

    thread = threading.Thread(target=other_run)
    thread.start()
    try:
        assert held.wait(10)
        assert revocations_retry() == RetrySummary()
        assert alive(standin, tokens)
    finally:
        release.set()
        thread.join()
    assert revocations_retry() == RetrySummary(revoked=1)
