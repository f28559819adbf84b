"""A slow spell at Discord costs at most a handful of accounts: refresh timeout, breaker, careful start."""

import logging
import time
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import OperationalError

from connectors.breaker import Breaker
from connectors.exceptions import CircuitOpen, ProviderUnavailable, RefreshNotStored
from connectors.models import ConnectedAccount
from connectors.tokens import account_refresh, fresh_access_token
from tests.conftest import SERVICE_ID
from tests.helpers import (
    REDIRECT_URI,
    FakeClock,
    postgres_only,
    refresh_tokens_run as sweep,
    seed_account,
    seed_many,
    sweeps_side_by_side,
)


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def breaker(clock):
    return Breaker(SERVICE_ID, clock=clock.time)


@pytest.fixture
def slow_spell(standin, settings):
    """Every refresh is carried out at Discord, and answered after our timeout."""
    settings.TOKEN_REFRESH_TIMEOUT = 0.3
    settings.REFRESH_BREAKER_COOLDOWN = 60
    standin.delay_answer_next("token.refresh_token", seconds=1.0, count=1000)
    return standin


def test_three_faults_in_a_row_open_the_breaker_for_the_cool_down(db, breaker, clock, settings):
    settings.REFRESH_BREAKER_COOLDOWN = 60
    breaker.failed()
    breaker.failed()
    assert not breaker.state().open
    assert breaker.state().failures == 2
    breaker.check("Discord")

    breaker.failed()

    assert breaker.state().open
    with pytest.raises(CircuitOpen, match="Discord is unavailable") as caught:
        breaker.check("Discord")
    assert caught.value.retry_after == pytest.approx(60)
    assert isinstance(caught.value, ProviderUnavailable)
    clock.sleep(61)
    breaker.check("Discord")
    assert breaker.state().failures == 0


def test_an_answer_in_time_starts_the_count_again(db, breaker):
    breaker.failed()
    breaker.failed()
    breaker.succeeded()
    breaker.failed()
    breaker.failed()

    assert not breaker.state().open


def test_the_breaker_is_one_for_every_process(db, clock):
    """Faults recorded by three processes count as three in a row."""
    for _ in range(3):
        Breaker(SERVICE_ID, clock=clock.time).failed()

    assert Breaker(SERVICE_ID, clock=clock.time).state().open


def test_an_open_breaker_refuses_a_refresh_without_calling_discord(standin, alice):
    Breaker(SERVICE_ID).trip()
    due = seed_account(standin, alice, expires_in=60)
    valid = seed_account(standin, alice, expires_in=86400)

    with pytest.raises(ProviderUnavailable, match="refreshes are paused until"):
        fresh_access_token(due)

    assert standin.count("token") == 0
    assert ConnectedAccount.objects.get(pk=due.pk).last_error == ""
    assert fresh_access_token(valid) == valid.access_token


def test_timeouts_in_a_row_open_the_breaker_for_every_caller(slow_spell, alice):
    accounts = [seed_account(slow_spell, alice, expires_in=60) for _ in range(4)]
    for account in accounts[:3]:
        with pytest.raises(ProviderUnavailable, match="did not answer in time"):
            fresh_access_token(account)

    with pytest.raises(CircuitOpen):
        fresh_access_token(accounts[3])
    assert slow_spell.count("token.refresh_token") == 3


def summary_line(output):
    return output.strip().splitlines()[-1]



def test_a_slow_spell_costs_a_sweep_at_most_three_accounts(transactional_db, slow_spell, alice, settings):
    """40 accounts, 4 workers, every refresh answered too late; then Discord recovers."""
    accounts = [seed_account(slow_spell, alice, expires_in=60) for _ in range(40)]

    output, error = sweep("--workers", "4")

    assert error and error.startswith("Stopped: Discord is unavailable")
    lost = [a for a in accounts if not slow_spell.refresh_token_valid(a.refresh_token)]
    assert 1 <= len(lost) <= 3
    assert slow_spell.count("token.refresh_token") == len(lost)
    assert ConnectedAccount.objects.filter(status=ConnectedAccount.Status.NEEDS_RECONNECT).count() == 0

    # Nothing is tried during the cool-down, by a sweep or by code acting for a user.
    again, error = sweep("--workers", "4")
    assert "Stopped: Discord is unavailable" in error
    assert slow_spell.count("token.refresh_token") == len(lost)

    # After the cool-down, with Discord answering again: the rest are refreshed,
    # and only the lost ones need reconnecting.
    slow_spell.clear_faults()
    settings.REFRESH_BREAKER_COOLDOWN = 0
    Breaker(SERVICE_ID).trip()
    output, error = sweep("--workers", "4")
    needs_reconnect = set(
        ConnectedAccount.objects.filter(status=ConnectedAccount.Status.NEEDS_RECONNECT).values_list("pk", flat=True)
    )
    assert needs_reconnect == {a.pk for a in lost}
    for account in ConnectedAccount.objects.exclude(pk__in=needs_reconnect):
        assert slow_spell.refresh_token_valid(account.refresh_token)
    assert error is None
    assert summary_line(output) == f"refreshed {40 - len(lost)}, skipped 0, failed 0, needs reconnect {len(lost)}"


@postgres_only
def test_the_careful_start_widens_to_every_worker_as_answers_come_back_in_time(
    transactional_db, standin, alice
):
    """Twelve refreshes of 0.3 s each: one at a time would take 3.6 s."""
    for _ in range(12):
        seed_account(standin, alice, expires_in=60)
    standin.delay_next("token.refresh_token", seconds=0.3, count=12)
    started = time.monotonic()

    output, error = sweep("--workers", "4")

    assert error is None
    assert summary_line(output) == "refreshed 12, skipped 0, failed 0, needs reconnect 0"
    assert time.monotonic() - started < 12 * 0.3 * 0.6


def test_the_breaker_state_is_shown_by_check_connector(standin, settings):
    settings.REFRESH_BREAKER_COOLDOWN = 60
    standin.app.redirect_uris = [REDIRECT_URI]
    out = StringIO()
    call_command("check_connector", SERVICE_ID, stdout=out)
    assert "  Refresh circuit breaker: closed (0 timeout(s) or server error(s) in a row)" in out.getvalue()

    Breaker(SERVICE_ID).trip()
    out = StringIO()
    with pytest.raises(CommandError, match="Refreshes are paused"):
        call_command("check_connector", SERVICE_ID, stdout=out)
    assert "✗ Refresh circuit breaker: open: refreshes are paused until" in out.getvalue()


def test_the_accounts_page_and_the_admin_say_discord_is_unavailable(client_alice, admin_client, standin):
    assert "unavailable" not in client_alice.get("/accounts/").content.decode()
    Breaker(SERVICE_ID).trip()

    page = client_alice.get("/accounts/").content.decode()
    assert "Discord is unavailable" in page
    admin_page = admin_client.get("/admin/connectors/connectedaccount/").content.decode()
    assert "Discord is unavailable" in admin_page


def test_a_database_error_after_discord_answered_is_retried_not_lost(
    standin, alice, monkeypatch, caplog
):
    account = seed_account(standin, alice, expires_in=60)
    old_access = account.access_token
    real_save = ConnectedAccount.save
    failures = []

    def flaky_save(self, *args, **kwargs):
        if not failures:
            failures.append(1)
            raise OperationalError("server closed the connection unexpectedly")
        return real_save(self, *args, **kwargs)

    monkeypatch.setattr(ConnectedAccount, "save", flaky_save)
    caplog.set_level(logging.INFO, logger="connectors")

    result = account_refresh(account)

    stored = ConnectedAccount.objects.get(pk=account.pk)
    assert result.refreshed and failures == [1]
    assert standin.refresh_token_valid(stored.refresh_token)
    assert stored.access_token == result.account.access_token != old_access
    assert "OperationalError" in caplog.text
    assert stored.refresh_token not in caplog.text and stored.access_token not in caplog.text


def test_tokens_the_database_never_takes_are_logged_as_lost_and_revoked_without_the_tokens(
    standin, alice, monkeypatch, caplog, settings
):
    account = seed_account(standin, alice, expires_in=60)

    def broken(*args, **kwargs):
        raise OperationalError("the database is gone")

    monkeypatch.setattr(ConnectedAccount, "save", broken)
    monkeypatch.setattr("django.db.models.QuerySet.update", broken)
    settings.TOKEN_STORE_RETRY_FOR = 0.5

    with pytest.raises(RefreshNotStored, match="will need reconnecting"):
        account_refresh(account)

    assert "LOST: the provider rotated the tokens of account" in caplog.text
    # Nothing stays live at the provider that is not stored here.
    [grant] = [g for g in standin._grants if g.user.id == account.uid]
    assert not standin.access_token_valid(grant.access_token) and standin.grants == []
    assert "revoked a refreshed grant that could not be stored at Discord" in caplog.text
    for token in (grant.access_token, grant.refresh_token, account.refresh_token):
        assert token not in caplog.text


@postgres_only
def test_two_hosts_in_a_slow_spell_share_one_breaker(transactional_db, slow_spell, alice):  # noqa: F811
    """Two sweep processes of 4 workers: the faults of both count toward one breaker."""
    seed_many(slow_spell, alice, 40)

    runs = sweeps_side_by_side(
        slow_spell, "--within", "1d", "--workers", "4",
        env={"TOKEN_REFRESH_TIMEOUT": "0.3", "REFRESH_BREAKER_COOLDOWN": "60"},
    )

    for returncode, _, err in runs:
        assert returncode != 0
        assert "Stopped: Discord is unavailable" in err
    lost = [a for a in ConnectedAccount.objects.all() if not slow_spell.refresh_token_valid(a.refresh_token)]
    # Three faults in a row trip it, wherever they happened; each host has one refresh in flight
    # at first, so at most one more was under way when it tripped.
    assert 3 <= len(lost) <= 4
    assert slow_spell.count("token.refresh_token") == len(lost)
