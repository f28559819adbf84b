"""``manage.py refresh_tokens``: what an operator running it from cron sees and relies on."""

import re
import time
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from connectors import sweep
from connectors.management.commands.refresh_tokens import parse_duration
from connectors.models import ConnectedAccount
from tests.conftest import SERVICE_ID

from tests.helpers import postgres_only, seed_account, seed_many, sweeps_side_by_side

SUMMARY = re.compile(
    r"^refreshed (\d+), skipped (\d+), failed (\d+), needs reconnect (\d+)"
    r"(?: \((\d+) waited out a rate limit\))?$"
)


class Terminal(StringIO):
    def isatty(self):
        return True


def run(*args, stdout=None):
    out = stdout or StringIO()
    call_command("refresh_tokens", *args, stdout=out)
    return out.getvalue()


def summary_of(output):
    lines = output.strip().splitlines()
    match = SUMMARY.match(lines[-1])
    assert match, f"no summary line at the end of {output!r}"
    return tuple(int(n) for n in match.groups()[:4])


def requeued_in(output):
    """How many times the run put an account back in its queue for the rate limit."""
    return int(SUMMARY.match(output.strip().splitlines()[-1]).group(5) or 0)


def secrets_in(output, accounts):
    return [
        token
        for account in accounts
        for token in (account.access_token, account.refresh_token)
        if token and token in output
    ]


@pytest.fixture
def accounts(transactional_db, standin, alice):  # noqa: F811
    """Three due (within a day), one due only within a week, one without expiry, one needing reconnect."""
    due = [seed_account(standin, alice, expires_in=seconds) for seconds in (60, 3600, 20 * 3600)]
    later = seed_account(standin, alice, expires_in=3 * 86400)
    no_expiry = seed_account(standin, alice, expires_in=3600)
    ConnectedAccount.objects.filter(pk=no_expiry.pk).update(expires_at=None)
    broken = seed_account(standin, alice, expires_in=60)
    ConnectedAccount.objects.filter(pk=broken.pk).update(
        status=ConnectedAccount.Status.NEEDS_RECONNECT, status_reason="gone"
    )
    return {"due": due, "later": later, "no_expiry": no_expiry, "broken": broken}


def test_dry_run_lists_the_due_accounts_and_changes_nothing(accounts, standin):
    output = run("--dry-run")

    lines = output.strip().splitlines()
    assert lines[-1] == "would refresh 3 (dry run: nothing changed)"
    listed = lines[:-1]
    assert len(listed) == 3
    for line, account in zip(listed, accounts["due"]):
        assert line.split()[:3] == [str(account.pk), SERVICE_ID, account.uid]
        assert account.expires_at.isoformat() in line
    assert standin.calls == []
    for account in accounts["due"]:
        assert ConnectedAccount.objects.get(pk=account.pk).access_token == account.access_token
    assert secrets_in(output, accounts["due"]) == []


def test_a_run_refreshes_the_due_accounts_and_leaves_the_rest(accounts, standin):
    output = run("--workers", "2")

    assert output.count("\n") == 1
    assert summary_of(output) == (3, 0, 0, 0)
    assert standin.count("token.refresh_token") == 3
    for account in accounts["due"]:
        stored = ConnectedAccount.objects.get(pk=account.pk)
        assert stored.access_token != account.access_token
        assert standin.refresh_token_valid(stored.refresh_token)
        assert stored.refreshed_at is not None
    for name in ("later", "no_expiry", "broken"):
        stored = ConnectedAccount.objects.get(pk=accounts[name].pk)
        assert stored.access_token == accounts[name].access_token
        assert stored.refreshed_at is None
    assert secrets_in(output, accounts["due"]) == []

    assert summary_of(run()) == (0, 0, 0, 0)
    assert standin.count("token.refresh_token") == 3


def test_a_wider_window_takes_more_accounts(accounts, standin):
    assert summary_of(run("--within", "4d")) == (4, 0, 0, 0)
    assert summary_of(run("--within", "90m")) == (0, 0, 0, 0)
    assert standin.count("token.refresh_token") == 4


def test_a_revoked_grant_is_reported_as_needing_reconnect(accounts, standin):
    revoked = accounts["due"][0]
    ConnectedAccount.objects.filter(pk=revoked.pk).update(refresh_token="revoked-at-discord")

    assert summary_of(run()) == (2, 0, 0, 1)

    stored = ConnectedAccount.objects.get(pk=revoked.pk)
    assert stored.status == ConnectedAccount.Status.NEEDS_RECONNECT
    assert stored.access_token == revoked.access_token


def test_a_failed_refresh_makes_the_exit_status_non_zero(accounts, standin):
    standin.fail_next("token.refresh_token", status=500)
    out = StringIO()

    with pytest.raises(CommandError, match="1 account\\(s\\) could not be refreshed"):
        run(stdout=out)

    assert summary_of(out.getvalue()) == (2, 0, 1, 0)
    failed = [
        account
        for account in accounts["due"]
        if ConnectedAccount.objects.get(pk=account.pk).access_token == account.access_token
    ]
    assert len(failed) == 1
    stored = ConnectedAccount.objects.get(pk=failed[0].pk)
    assert stored.status == ConnectedAccount.Status.ACTIVE
    assert "server error" in stored.last_error
    assert standin.refresh_token_valid(stored.refresh_token)


def test_an_account_refreshed_by_someone_else_meanwhile_is_skipped(accounts, standin, monkeypatch):
    """A listing taken before another run refreshed the account, replayed afterwards."""
    already = accounts["later"]
    real = sweep.due_accounts

    def stale_listing(**kwargs):
        yield (already.pk,)
        yield from real(**kwargs)

    monkeypatch.setattr(sweep, "due_accounts", stale_listing)

    assert summary_of(run()) == (3, 1, 0, 0)
    assert ConnectedAccount.objects.get(pk=already.pk).access_token == already.access_token


def test_small_batches_still_reach_every_account(transactional_db, standin, alice):  # noqa: F811
    seeded = [seed_account(standin, alice, expires_in=60) for _ in range(7)]

    summary = sweep.refresh_due(within=timedelta(days=1), workers=3, batch_size=2)

    assert (summary.refreshed, summary.skipped, summary.failed, summary.needs_reconnect) == (7, 0, 0, 0)
    assert standin.count("token.refresh_token") == 7
    for account in seeded:
        assert standin.refresh_token_valid(ConnectedAccount.objects.get(pk=account.pk).refresh_token)


def test_progress_is_drawn_on_a_terminal_and_ends_in_one_summary_line(accounts, standin, monkeypatch):
    from connectors.management.commands import refresh_tokens

    monkeypatch.setattr(refresh_tokens, "PROGRESS_INTERVAL", 0)
    output = run(stdout=Terminal())

    assert "\r1/3  " in output
    assert output.count("\n") == 1
    assert summary_of(output.rsplit("\r\033[K", 1)[-1]) == (3, 0, 0, 0)


def test_no_progress_when_the_output_is_not_a_terminal(accounts, standin):
    assert "\r" not in run()


@pytest.mark.parametrize(
    "text, expected",
    [("45s", timedelta(seconds=45)), ("90m", timedelta(minutes=90)), ("12h", timedelta(hours=12)),
     ("30d", timedelta(days=30)), (" 1d ", timedelta(days=1))],
)
def test_within_takes_a_number_and_a_unit(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "1", "d", "1w", "-5m", "1.5h", "12 hours", "m5", "99999999999d"])
def test_a_bad_within_is_refused_with_a_clear_message(db, text):
    with pytest.raises(CommandError, match=r"--within"):
        run("--within", text)


@pytest.mark.parametrize("option", ["--workers", "--batch-size"])
def test_workers_and_batch_size_must_be_positive(db, option):
    with pytest.raises(CommandError, match=option):
        run(option, "0")


@postgres_only
def test_two_runs_started_together_refresh_each_account_once(transactional_db, standin, alice):  # noqa: F811
    seed_many(standin, alice, 500)

    outputs = sweep_processes(standin, "--within", "1d", "--workers", "4")

    assert_each_refreshed_once(standin, outputs, 500)
    assert all(account.refreshed_at is not None for account in ConnectedAccount.objects.all())


# The rate limit: one pace for every run, nothing given up for a 429.


def test_an_account_the_rate_limit_held_back_is_refreshed_later_in_the_same_run(accounts, standin):
    standin.rate_limit_next(count=1, retry_after=0.2, is_global=False)

    output = run("--workers", "1")

    assert summary_of(output) == (3, 0, 0, 0)
    assert requeued_in(output) == 1
    assert standin.count("token.refresh_token") == 4
    assert standin.count_429() == 1
    for account in accounts["due"]:
        stored = ConnectedAccount.objects.get(pk=account.pk)
        assert standin.refresh_token_valid(stored.refresh_token)
        assert stored.last_error == ""


def test_a_run_stops_at_max_time_and_keeps_the_accounts_it_could_not_do(accounts, standin):
    standin.rate_limit_next(count=100, retry_after=0.3, is_global=True)
    out = StringIO()

    with pytest.raises(CommandError, match="Stopped after --max-time 2s"):
        run("--workers", "1", "--max-time", "2s", stdout=out)

    refreshed, skipped, failed, reconnect = summary_of(out.getvalue())
    assert (refreshed, reconnect) == (0, 0)
    assert requeued_in(out.getvalue()) >= 3
    for account in accounts["due"]:
        stored = ConnectedAccount.objects.get(pk=account.pk)
        assert stored.access_token == account.access_token
        assert stored.status == ConnectedAccount.Status.ACTIVE
        assert standin.refresh_token_valid(stored.refresh_token)
    # Requests waited for the provider's word instead of being sent to be refused again.
    assert standin.count_429() <= 2 / 0.3 + 2


def test_a_wait_past_the_deadline_is_not_waited_for(accounts, standin):
    standin.rate_limit_next(count=1, retry_after=30, is_global=True)
    out = StringIO()

    with pytest.raises(CommandError, match="Stopped after --max-time 5s"):
        run("--workers", "1", "--max-time", "5s", stdout=out)

    assert summary_of(out.getvalue()) == (0, 0, 3, 0)
    assert standin.count("token.refresh_token") == 1
    assert all(standin.refresh_token_valid(a.refresh_token) for a in accounts["due"])


def test_an_account_refreshed_a_moment_ago_is_not_refreshed_again_however_wide_the_window(
    accounts, standin, monkeypatch
):
    assert summary_of(run("--within", "30d")) == (4, 0, 0, 0)
    # Discord's tokens live a week: all four are still due within 30 days.
    assert run("--within", "30d", "--dry-run").strip().splitlines()[-1].startswith("would refresh 0")

    refreshed = [accounts["later"], *accounts["due"]]
    real = sweep.due_accounts

    def stale_listing(**kwargs):
        for account in refreshed:
            yield (account.pk,)
        yield from real(**kwargs)

    monkeypatch.setattr(sweep, "due_accounts", stale_listing)
    assert summary_of(run("--within", "30d")) == (0, 4, 0, 0)
    assert standin.count("token.refresh_token") == 4


def sweep_processes(standin, *arguments, count=2, env=None):
    """``count`` refresh_tokens runs started together, each succeeding; their outputs."""
    runs = sweeps_side_by_side(standin, *arguments, count=count, env=env)
    for returncode, _, err in runs:
        assert returncode == 0, err
    return [out for _, out, _ in runs]


def assert_each_refreshed_once(standin, outputs, count):
    summaries = [summary_of(out) for out in outputs]
    assert sum(refreshed for refreshed, *_ in summaries) == count
    assert all(failed == reconnect == 0 for _, _, failed, reconnect in summaries)
    stored = list(ConnectedAccount.objects.all())
    assert len(stored) == count
    assert all(account.status == ConnectedAccount.Status.ACTIVE for account in stored)
    assert all(standin.refresh_token_valid(account.refresh_token) for account in stored)
    # Exactly once: every refresh Discord carried out is one an account stored.
    assert standin.count("token.refresh_token") - standin.count_429("token.refresh_token") == count


@postgres_only
@pytest.mark.parametrize("cache_url", ["", "redis://127.0.0.1:6379/15"], ids=["database-cache", "redis"])
def test_two_hosts_sweeping_at_once_keep_one_pace_under_the_limit(
    transactional_db, standin, alice, cache_url  # noqa: F811
):
    """Two runs of four workers, 40 accounts, 5 refreshes a second allowed by Discord."""
    if cache_url:
        import redis

        redis.Redis.from_url(cache_url).flushdb()
    seed_many(standin, alice, 40)
    standin.rate_limit(5)
    started = time.monotonic()

    outputs = sweep_processes(
        standin, "--within", "30d", "--workers", "4", env={"CACHE_URL": cache_url} if cache_url else None
    )

    elapsed = time.monotonic() - started
    assert_each_refreshed_once(standin, outputs, 40)
    sent = standin.count("token")
    assert standin.count_429() <= 0.05 * sent, (standin.count_429(), sent)
    # Paced, not crawling: 40 refreshes at 5 a second.
    assert elapsed < 30


def test_a_run_that_refreshed_something_leaves_one_line_on_record(accounts, standin, caplog):
    import getpass
    import logging

    caplog.set_level(logging.INFO, logger="connectors.audit")
    run()
    run()

    lines = [record.getMessage() for record in caplog.records if record.name == "connectors.audit"]
    assert lines == [f"refresh_tokens by {getpass.getuser()}: --within 1d: refreshed 3, skipped 0, failed 0, needs reconnect 0"]
    assert secrets_in(caplog.text, accounts["due"]) == []
