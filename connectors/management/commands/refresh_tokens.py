import re
import time
from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError

from connectors.audit import command_done
from connectors.cache import CACHE_ERRORS
from connectors.brake import held_problem
from connectors.revocations import pending_revocations_count, revocations_retry
from connectors.sweep import DEFAULT_MAX_TIME, due_accounts, due_queryset, refresh_due

UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
DURATION = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
# A terminal needs no more than this many redraws a second.
PROGRESS_INTERVAL = 0.2


def parse_duration(text, option="--within"):
    """``90m``, ``12h``, ``30d``, ``45s`` as a timedelta; CommandError otherwise."""
    match = DURATION.match(text or "")
    if match is None:
        raise CommandError(
            f"{option} expects a whole number and a unit (s, m, h or d), e.g. 90m, 12h, 30d "
            f"or 45s; got {text!r}."
        )
    number, unit = match.groups()
    try:
        duration = timedelta(**{UNITS[unit]: int(number)})
    except OverflowError:
        raise CommandError(f"{option} {text} is longer than any token lives.") from None
    if not duration:
        raise CommandError(f"{option} must be longer than zero; got {text!r}.")
    return duration


def positive(text):
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


class Command(BaseCommand):
    help = (
        "Refresh the access token of every active account whose token expires within "
        "--within. Safe to run on several hosts at once: all keep one pace of requests, "
        "and accounts another run is refreshing or refreshed within the last minute are "
        "skipped. An account the rate limit holds back is tried again until --max-time. "
        "First, grants that could not be stored are revoked again (for 24 hours). "
        "Exits non-zero when any refresh failed, time ran out, such a grant was given up, or "
        "the brake on mass marking held needs-reconnect marks back (see confirm_marks)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--within",
            default="1d",
            help="Refresh tokens that expire within this long: 45s, 90m, 12h, 30d (default 1d).",
        )
        parser.add_argument(
            "--workers",
            type=positive,
            default=4,
            help="Refreshes running at once (default 4; on SQLite always 1: its write lock "
            "lets only one run at a time).",
        )
        parser.add_argument(
            "--batch-size",
            type=positive,
            default=200,
            help="Accounts read from the database at a time (default 200).",
        )
        parser.add_argument(
            "--max-time",
            default=f"{int(DEFAULT_MAX_TIME.total_seconds() // 60)}m",
            help="Start no refresh after this long; accounts the rate limit held back until then "
            "count as failed: 45s, 90m, 1h (default 15m).",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="List the accounts that would be refreshed; change nothing.",
        )

    def handle(self, *args, **options):
        try:
            self.run(**options)
        except CACHE_ERRORS as error:
            # Our database or cache, before or between refreshes: what a provider answered is stored
            # or revoked by the refresh itself (connectors.tokens), never dropped here.
            raise CommandError(
                f"The database or the shared cache cannot be reached ({type(error).__name__}). "
                "Check DATABASE_URL and CACHE_URL, then run again."
            ) from None

    def run(self, *, within, workers, batch_size, max_time, dry_run, **options):
        window = parse_duration(within)
        deadline = parse_duration(max_time, "--max-time")
        if dry_run:
            pending = pending_revocations_count()
            if pending:
                self.stdout.write(f"pending revocations: {pending} (dry run: none tried)")
            self.list_due(window, batch_size)
            return
        revocations = revocations_retry()
        if revocations:
            self.stdout.write(revocations.line())
            if revocations.revoked or revocations.given_up:
                command_done("refresh_tokens", revocations.line())
        terminal = self.stdout.isatty()
        summary = refresh_due(
            within=window,
            workers=workers,
            batch_size=batch_size,
            max_time=deadline,
            on_progress=self.progress(window) if terminal else None,
        )
        if terminal:
            self.stdout.write("\r\033[K", ending="")
        self.stdout.write(summary.line())
        if summary.refreshed or summary.needs_reconnect or summary.held:
            command_done("refresh_tokens", f"--within {within}: {summary.line()}")
        problems = []
        if summary.stopped_by:
            problems.append(f"Stopped: {summary.stopped_by} Run again once it is over.")
        elif summary.timed_out:
            problems.append(
                f"Stopped after --max-time {max_time} with accounts still due: the rate limit "
                f"held them back ({summary.failed} counted as failed). Run again to refresh them."
            )
        elif summary.failed:
            problems.append(
                f"{summary.failed} account(s) could not be refreshed; the log and each "
                "account's last error say why. Run again later to retry them."
            )
        if summary.credentials_refused:
            problems.append(
                f"{', '.join(summary.credentials_refused)} refused the client credentials: no account was "
                "touched. Correct them in the admin (Test credentials), then run again."
            )
        if summary.held:
            problems.append(held_problem(summary.held))
        if revocations.given_up:
            problems.append(
                f"Gave up revoking {revocations.given_up} grant(s) that could not be stored (LEAKED): "
                "they stay live at the provider; the log names each."
            )
        if problems:
            raise CommandError(" ".join(problems))

    def list_due(self, window, batch_size):
        count = 0
        rows = due_accounts(
            within=window, batch_size=batch_size, fields=("pk", "service_id", "uid", "expires_at")
        )
        for pk, service_id, uid, expires_at in rows:
            self.stdout.write(f"{pk}  {service_id}  {uid}  expires {expires_at.isoformat()}")
            count += 1
        self.stdout.write(f"would refresh {count} (dry run: nothing changed)")

    def progress(self, window):
        """A one-line counter redrawn in place; cleared before the summary is written."""
        total = due_queryset(within=window).count()
        shown = {"at": 0.0}

        def show(summary):
            now = time.monotonic()
            if now - shown["at"] < PROGRESS_INTERVAL:
                return
            shown["at"] = now
            self.stdout.write(f"\r{summary.done}/{total}  {summary.line()}\033[K", ending="")
            self.stdout.flush()

        return show
