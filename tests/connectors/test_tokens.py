"""Stored accounts stay usable: fresh tokens on demand, one refresh per grant, faults kept apart.

Everything talks real HTTP to the local Discord stand-in, whose refresh
tokens rotate like Discord's: a refresh kills the old refresh token.
"""

import subprocess
import sys
import threading
import time
from datetime import timedelta

import pytest
from django.db import connections
from django.utils import timezone
from django.utils.html import escape

from connectors.config import config_update
from connectors.exceptions import NeedsReconnect, NotConfigured, ProviderUnavailable, RateLimited
from connectors.models import ConnectedAccount
from connectors.registry import registry
from connectors.tokens import account_refresh, fresh_access_token
from tests.conftest import SERVICE_ID
from tests.helpers import (
    REPO,
    child_env,
    connect,
    connector_settings,
    postgres_only,
    read_line,
    revoke_at_standin,
    seed_account,
)

def make_due(account, seconds=60):
    ConnectedAccount.objects.filter(pk=account.pk).update(
        expires_at=timezone.now() + timedelta(seconds=seconds)
    )


@pytest.fixture
def expiring(standin, alice):  # noqa: F811
    return seed_account(standin, alice, expires_in=60)


def test_a_valid_token_is_returned_without_any_request_and_with_one_query(
    standin, alice, django_assert_max_num_queries  # noqa: F811
):
    account = seed_account(standin, alice, expires_in=86400)
    with django_assert_max_num_queries(1):
        token = fresh_access_token(account)
    assert token == account.access_token
    assert standin.access_token_valid(token)
    assert standin.calls == []


def test_a_token_expiring_within_the_margin_is_refreshed_once(standin, expiring):
    old_access, old_refresh = expiring.access_token, expiring.refresh_token

    token = fresh_access_token(expiring)

    assert standin.count("token.refresh_token") == 1
    assert token != old_access
    assert standin.access_token_valid(token)
    assert not standin.refresh_token_valid(old_refresh)
    stored = ConnectedAccount.objects.get(pk=expiring.pk)
    assert stored.access_token == token == expiring.access_token
    assert standin.refresh_token_valid(stored.refresh_token)
    assert stored.refreshed_at is not None
    assert stored.expires_at > timezone.now() + timedelta(days=6)
    assert fresh_access_token(expiring) == token
    assert standin.count("token.refresh_token") == 1


def test_the_margin_comes_from_settings_or_the_caller(standin, expiring, settings):
    settings.TOKEN_REFRESH_MARGIN = 30
    assert fresh_access_token(expiring) == expiring.access_token
    assert standin.count("token") == 0
    fresh_access_token(expiring, margin=120)
    assert standin.count("token.refresh_token") == 1


def test_a_caller_holding_an_old_copy_gets_the_token_another_process_stored(standin, expiring):
    stale = ConnectedAccount.objects.get(pk=expiring.pk)
    token = fresh_access_token(expiring)
    assert fresh_access_token(stale) == token
    assert standin.count("token.refresh_token") == 1


def test_refresh_now_refreshes_a_valid_token_and_says_so(standin, alice):  # noqa: F811
    account = seed_account(standin, alice, expires_in=86400)
    assert account_refresh(account, force=False).refreshed is False
    assert standin.count("token") == 0
    result = account_refresh(account, force=True)
    assert result.refreshed is True
    assert standin.count("token.refresh_token") == 1
    assert standin.access_token_valid(result.account.access_token)


def test_a_revoked_grant_marks_the_account_for_reconnect_and_keeps_it(
    client_alice, standin  # noqa: F811
):
    connect(client_alice, standin)
    account = ConnectedAccount.objects.get()
    revoke_at_standin(standin, account.refresh_token)
    make_due(account)
    before = ConnectedAccount.objects.get(pk=account.pk)

    with pytest.raises(NeedsReconnect) as caught:
        fresh_access_token(account)

    assert caught.value.account_id == account.pk
    stored = ConnectedAccount.objects.get(pk=account.pk)
    assert stored.status == ConnectedAccount.Status.NEEDS_RECONNECT
    assert stored.status_reason == registry.get(SERVICE_ID).reconnect_reason
    assert stored.status_changed_at is not None
    assert "invalid_grant" in stored.last_error
    assert (stored.access_token, stored.refresh_token) == (before.access_token, before.refresh_token)
    assert stored.servers.count() == 1

    calls = standin.count("token")
    with pytest.raises(NeedsReconnect):
        fresh_access_token(account)
    assert standin.count("token") == calls

    html = client_alice.get("/accounts/").content.decode()
    assert "Needs reconnect" in html
    assert "Reconnect</a>" in html
    assert escape(registry.get(SERVICE_ID).reconnect_reason) in html


def test_reconnecting_the_same_identity_makes_the_account_active_again(
    client_alice, standin  # noqa: F811
):
    connect(client_alice, standin)
    account = ConnectedAccount.objects.get()
    revoke_at_standin(standin, account.refresh_token)
    make_due(account)
    with pytest.raises(NeedsReconnect):
        fresh_access_token(account)

    connect(client_alice, standin)

    stored = ConnectedAccount.objects.get()
    assert (stored.pk, stored.created_at) == (account.pk, account.created_at)
    assert stored.updated_at > account.updated_at
    assert stored.servers.count() == 1
    assert stored.status == ConnectedAccount.Status.ACTIVE
    assert stored.status_reason == ""
    assert stored.last_error == ""
    assert standin.refresh_token_valid(stored.refresh_token)
    assert fresh_access_token(stored) == stored.access_token
    assert "Reconnect</a>" not in client_alice.get("/accounts/").content.decode()


def test_an_unknown_refresh_token_marks_the_account_for_reconnect(standin, expiring):
    ConnectedAccount.objects.filter(pk=expiring.pk).update(refresh_token="not-a-token-discord-knows")
    with pytest.raises(NeedsReconnect):
        fresh_access_token(expiring)
    assert ConnectedAccount.objects.get(pk=expiring.pk).status == ConnectedAccount.Status.NEEDS_RECONNECT


def assert_unchanged(account):
    stored = ConnectedAccount.objects.get(pk=account.pk)
    assert stored.access_token == account.access_token
    assert stored.refresh_token == account.refresh_token
    assert stored.expires_at == account.expires_at
    assert stored.status == ConnectedAccount.Status.ACTIVE
    return stored


@pytest.mark.parametrize("status", [500, 502, 503])
def test_a_server_error_keeps_the_stored_tokens_and_records_the_fault(standin, expiring, status):
    standin.fail_next("token.refresh_token", status=status)

    with pytest.raises(ProviderUnavailable, match="server error"):
        fresh_access_token(expiring)

    stored = assert_unchanged(expiring)
    assert f"HTTP {status}" in stored.last_error
    assert stored.last_error_at is not None
    assert standin.refresh_token_valid(expiring.refresh_token)

    token = fresh_access_token(expiring)
    assert standin.access_token_valid(token)
    assert ConnectedAccount.objects.get(pk=expiring.pk).last_error == ""


def test_a_connector_without_its_secret_keeps_the_stored_tokens_and_says_what_is_missing(
    standin, expiring
):
    config_update(service_id=SERVICE_ID, clear=["clientSecret"])

    with pytest.raises(NotConfigured, match="missing clientSecret"):
        fresh_access_token(expiring)

    assert "missing clientSecret" in assert_unchanged(expiring).last_error
    assert standin.count("token") == 0


def test_a_refresh_waits_longer_than_other_calls(standin, expiring, settings):
    connector_settings(settings, HTTP_TIMEOUT=0.3)
    settings.TOKEN_REFRESH_TIMEOUT = 3.0
    standin.delay_next("token.refresh_token", seconds=1.0)

    token = fresh_access_token(expiring)

    assert standin.access_token_valid(token)


def test_a_timeout_keeps_the_stored_tokens_and_records_the_fault(standin, expiring, settings):
    settings.TOKEN_REFRESH_TIMEOUT = 0.3
    standin.delay_next("token.refresh_token", seconds=1.0)

    with pytest.raises(ProviderUnavailable, match="did not answer in time"):
        fresh_access_token(expiring)

    stored = assert_unchanged(expiring)
    assert "did not answer in time" in stored.last_error
    # Once its delay is over the stand-in still carries the refresh out, as a slow
    # provider would. Waiting for that keeps the late request from taking the next
    # test's faults (a forced 429) from the shared stand-in.
    deadline = time.monotonic() + 5
    while standin.refresh_token_valid(expiring.refresh_token) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not standin.refresh_token_valid(expiring.refresh_token)


def test_a_rate_limited_refresh_waits_and_succeeds(standin, expiring):
    standin.rate_limit_next(count=2, retry_after=0.05)
    started = time.monotonic()

    token = fresh_access_token(expiring)

    assert time.monotonic() - started >= 0.05
    assert standin.count("token.refresh_token") == 3
    assert standin.access_token_valid(token)


def test_a_refresh_rate_limited_beyond_the_retries_keeps_the_tokens(standin, expiring):
    standin.rate_limit_next(count=4, retry_after=0.01)

    with pytest.raises(RateLimited):
        fresh_access_token(expiring)

    stored = assert_unchanged(expiring)
    assert "rate limiting" in stored.last_error
    assert standin.refresh_token_valid(expiring.refresh_token)


CALLER = """
import sys, time
import django
django.setup()
from django.db import connections
from connectors.models import ConnectedAccount
from connectors.tokens import fresh_access_token
account = ConnectedAccount.objects.get(pk=int(sys.argv[1]))
print("ready", flush=True)
start_at = float(sys.stdin.readline())
time.sleep(max(0.0, start_at - time.time()))
print(fresh_access_token(account), flush=True)
connections.close_all()
"""


@postgres_only
def test_threads_and_processes_at_once_cause_one_refresh_and_share_its_token(
    transactional_db, standin, alice  # noqa: F811
):
    account = seed_account(standin, alice, expires_in=60)
    # The first refresh takes a while, so every other caller arrives while it holds the lock.
    standin.delay_next("token.refresh_token", seconds=0.5)
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", CALLER, str(account.pk)],
            cwd=REPO,
            env=child_env(standin),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    try:
        for process in processes:
            assert read_line(process, timeout=30) == "ready"
        start_at = time.time() + 0.5
        threads_count = 8
        barrier = threading.Barrier(threads_count)
        tokens, errors = [], []

        def call():
            try:
                mine = ConnectedAccount.objects.get(pk=account.pk)
                barrier.wait(timeout=10)
                time.sleep(max(0.0, start_at - time.time()))
                tokens.append(fresh_access_token(mine))
            except Exception as error:
                errors.append(error)
            finally:
                connections.close_all()

        threads = [threading.Thread(target=call) for _ in range(threads_count)]
        for process in processes:
            process.stdin.write(f"{start_at}\n")
            process.stdin.flush()
        for thread in threads:
            thread.start()
        for process in processes:
            out, err = process.communicate(timeout=30)
            assert process.returncode == 0, err
            tokens.append(out.strip())
        for thread in threads:
            thread.join(timeout=30)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()

    assert errors == []
    assert len(tokens) == 12
    assert standin.count("token.refresh_token") == 1
    assert len(set(tokens)) == 1
    assert standin.access_token_valid(tokens[0])
    stored = ConnectedAccount.objects.get(pk=account.pk)
    assert stored.access_token == tokens[0]
    again = account_refresh(stored, force=True)
    assert again.refreshed
    assert standin.count("token.refresh_token") == 2
    assert standin.refresh_token_valid(again.account.refresh_token)


@postgres_only
def test_a_sweep_skips_an_account_another_caller_holds(transactional_db, standin, alice):  # noqa: F811
    account = seed_account(standin, alice, expires_in=60)
    locked, release = threading.Event(), threading.Event()

    def hold():
        from django.db import transaction

        try:
            with transaction.atomic():
                ConnectedAccount.objects.select_for_update().get(pk=account.pk)
                locked.set()
                release.wait(timeout=10)
        finally:
            connections.close_all()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert locked.wait(timeout=10)
        assert account_refresh(account, skip_locked=True) is None
    finally:
        release.set()
        holder.join(timeout=10)
    assert standin.count("token") == 0
    assert account_refresh(account, skip_locked=True).refreshed
