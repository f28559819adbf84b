"""Benchmark of the token sweep behind ``manage.py refresh_tokens`` (not a test).

Run from the repository root:

    python bench/refresh_tokens.py --accounts 2000 --rate 50
    python bench/refresh_tokens.py --hosts 2 --accounts 200 --rate 5
    python bench/refresh_tokens.py --slow-spell --accounts 40 --workers 4
    python bench/refresh_tokens.py --memory-check

It starts the Discord stand-in in its own process, limited to ``--rate``
requests a second in each bucket as Discord limits the token endpoint, seeds
grants there through its control API and matching accounts here, then runs
the sweep in this process and reports how close it came to the limit, how
many requests the stand-in refused with 429, and whether any account was
lost. With ``--hosts N`` the sweep runs instead as N ``manage.py
refresh_tokens --workers 4`` processes started together, as N hosts' cron
would start them: they share the pace through the cache (CACHE_URL; the
database cache by default), and every account must be refreshed exactly once.
With ``--slow-spell`` every refresh is carried out by the stand-in but
answered after TOKEN_REFRESH_TIMEOUT (one second here): it reports how many
accounts the sweep lost before the breaker stopped it and how long that
took; then Discord recovers, the cool-down passes, and a second sweep
refreshes the rest and marks only the lost ones.
Every stored token is then checked by refreshing it once more with the limit
lifted: a token the stand-in no longer accepts marks its account "needs
reconnect", which is what counts as lost.

The database is a temporary SQLite file unless DATABASE_URL is set; the sweep
refreshes every due account in it, so a given database must hold no account
but the benchmark's own (the script refuses otherwise).

``--memory-check`` compares tracemalloc's peak during sweeps of 1,000 and
10,000 accounts with the limit lifted (see run_memory for the conditions):
reading accounts a page at a time should keep it flat. Results are also
appended to bench/results/refresh_tokens.md.
"""

import argparse
import gc
import sys
import time
import tracemalloc
from datetime import timedelta

import harness

RESULTS = harness.RESULTS / "refresh_tokens.md"
OWNER_PREFIX = "bench-"
SEED_CHUNK = 1000
# Tokens seeded to expire in an hour: due for a sweep with --within 1d.
SEED_EXPIRES_IN = 3600
MEMORY_SIZES = (1000, 10000)
MEMORY_WARMUP = 2500


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=2000, help="accounts to refresh (default 2000)")
    parser.add_argument("--rate", type=float, default=50, help="stand-in limit, requests/second (default 50)")
    parser.add_argument("--workers", type=int, default=8, help="sweep workers (default 8)")
    parser.add_argument("--batch-size", type=int, default=200, help="sweep page size (default 200)")
    parser.add_argument(
        "--hosts",
        type=int,
        default=0,
        help="instead of sweeping here: this many refresh_tokens processes at once, 4 workers each",
    )
    parser.add_argument(
        "--slow-spell",
        action="store_true",
        help="instead: every refresh answered after the timeout, then a recovery",
    )
    parser.add_argument(
        "--memory-check",
        action="store_true",
        help=f"instead: peak memory of sweeps of {MEMORY_SIZES[0]:,} and {MEMORY_SIZES[1]:,} accounts, no limit",
    )
    return parser.parse_args()


class Bench:
    def __init__(self, base_url, *, workers, batch_size):
        import requests

        from standin.dev import store_standin_credentials

        self.base_url = base_url
        self.workers = workers
        self.batch_size = batch_size
        self.control = requests.Session()
        store_standin_credentials()
        self._check_database()

    def _check_database(self):
        from connectors.models import ConnectedAccount

        others = ConnectedAccount.objects.exclude(user__username__startswith=OWNER_PREFIX)
        if others.exists():
            sys.exit("DATABASE_URL holds accounts other than the benchmark's; use an empty database.")
        ConnectedAccount.objects.all().delete()

    def _post(self, path, payload):
        answer = self.control.post(f"{self.base_url}/_standin/{path}", json=payload, timeout=60)
        answer.raise_for_status()
        return answer.json()

    def rate_limit(self, per_second):
        self._post("rate_limit", {"per_second": per_second})

    def refresh_requests(self):
        """Refresh requests the stand-in received, and how many of them it refused with 429."""
        stats = self.control.get(f"{self.base_url}/_standin/stats", timeout=10).json()
        return stats["counts"]["token.refresh_token"], stats["rate_limited_counts"]["token.refresh_token"]

    def seed(self, count, *, expires_in=SEED_EXPIRES_IN):
        """``count`` grants at the stand-in and an account holding each, owned by one new user."""
        from django.contrib.auth import get_user_model
        from django.utils import timezone

        from connectors.models import ConnectedAccount

        owner = get_user_model().objects.create_user(f"{OWNER_PREFIX}{time.time_ns()}")
        left = count
        while left:
            chunk = min(left, SEED_CHUNK)
            grants = self._post("grants", {"count": chunk, "scopes": "identify", "expires_in": expires_in})
            now = timezone.now()
            ConnectedAccount.objects.bulk_create(
                ConnectedAccount(
                    user=owner,
                    service_id=harness.SERVICE_ID,
                    uid=grant["user_id"],
                    access_token=grant["access_token"],
                    refresh_token=grant["refresh_token"],
                    scopes=grant["scope"],
                    expires_at=now + timedelta(seconds=grant["expires_in"]),
                )
                for grant in grants
            )
            left -= chunk
        return owner

    def sweep(self, within=timedelta(days=1)):
        from connectors.sweep import refresh_due

        return refresh_due(within=within, workers=self.workers, batch_size=self.batch_size)

    def lost(self):
        """Refresh every stored token once more, unthrottled; a dead one marks its account."""
        from connectors.models import ConnectedAccount

        self.rate_limit(None)
        # Else the check would skip what the sweep refreshed a moment ago (sweep.RECENT).
        ConnectedAccount.objects.update(refreshed_at=None)
        check = self.sweep(within=timedelta(days=365))
        reconnect = ConnectedAccount.objects.filter(status=ConnectedAccount.Status.NEEDS_RECONNECT).count()
        return reconnect, check


def run_rate(bench, *, accounts, rate):
    bench.seed(accounts)
    before, refused_before = bench.refresh_requests()
    started = time.perf_counter()
    summary = bench.sweep()
    elapsed = time.perf_counter() - started
    sent, refused = (after - at_start for after, at_start in zip(bench.refresh_requests(), (before, refused_before)))
    lost, check = bench.lost()
    accepted = summary.refreshed / elapsed
    return [
        ("accounts", f"{accounts:,}"),
        ("sweep", summary.line()),
        ("wall time", f"{elapsed:.1f} s"),
        ("accounts/second", f"{accepted:.1f}"),
        ("requests/second accepted (limit)", f"{accepted:.1f} ({rate:g}) = {accepted / rate:.0%} of the limit"),
        ("requests sent, 429 answers", f"{sent:,}, {refused:,} ({refused / max(sent, 1):.1%})"),
        ("accounts lost", f"{lost} (check: {check.line()})"),
    ]


def run_hosts(bench, *, hosts, accounts, rate):
    """``hosts`` sweeps started together in their own processes, as several hosts' cron would."""
    import subprocess

    from connectors.models import ConnectedAccount

    bench.seed(accounts)
    before, refused_before = bench.refresh_requests()
    command = [sys.executable, "manage.py", "refresh_tokens", "--within", "1d", "--workers", "4"]
    started = time.perf_counter()
    runs = [
        subprocess.Popen(command, cwd=harness.REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(hosts)
    ]
    outputs = [run.communicate(timeout=3600) for run in runs]
    elapsed = time.perf_counter() - started
    for run, (_, err) in zip(runs, outputs):
        if run.returncode:
            sys.exit(f"a sweep failed: {err}")
    sent, refused = (after - at_start for after, at_start in zip(bench.refresh_requests(), (before, refused_before)))
    carried_out = sent - refused
    refreshed_accounts = ConnectedAccount.objects.filter(refreshed_at__isnull=False).count()
    lost, check = bench.lost()
    return [
        ("accounts, sweeps", f"{accounts:,}, {hosts} processes of 4 workers"),
        ("sweeps", " / ".join(out.strip() for out, _ in outputs)),
        ("wall time (process start-up included)", f"{elapsed:.1f} s"),
        ("refreshes/second (limit)", f"{carried_out / elapsed:.1f} ({rate:g})"),
        ("requests sent, 429 answers", f"{sent:,}, {refused:,} ({refused / max(sent, 1):.1%} of those sent)"),
        ("refreshes per account", f"{carried_out / accounts:.2f} ({refreshed_accounts:,} accounts refreshed)"),
        ("accounts lost", f"{lost} (check: {check.line()})"),
    ]


SLOW_TIMEOUT = 1.0
SLOW_COOLDOWN = 3


def run_slow_spell(bench, *, accounts):
    """A sweep while every refresh is answered too late; then the sweep after the cool-down."""
    from django.conf import settings

    from connectors.models import ConnectedAccount

    settings.TOKEN_REFRESH_TIMEOUT = SLOW_TIMEOUT
    settings.REFRESH_BREAKER_COOLDOWN = SLOW_COOLDOWN
    bench.rate_limit(None)
    bench.seed(accounts)
    bench._post("delay_answer_next", {"kind": "token.refresh_token", "seconds": SLOW_TIMEOUT + 1, "count": 100000})
    started = time.perf_counter()
    spell = bench.sweep()
    tripped = time.perf_counter() - started
    attempts, _ = bench.refresh_requests()
    bench._post("clear_faults", {})
    time.sleep(SLOW_COOLDOWN + 0.5)
    recovery = bench.sweep()
    marked = ConnectedAccount.objects.filter(status=ConnectedAccount.Status.NEEDS_RECONNECT).count()
    return [
        ("accounts, workers", f"{accounts:,}, {bench.workers}"),
        ("refresh timeout, breaker", f"{SLOW_TIMEOUT:g} s; {settings.REFRESH_BREAKER_THRESHOLD} in a row, "
                                     f"cool-down {SLOW_COOLDOWN} s"),
        ("during the spell", f"{spell.line()}; stopped: {bool(spell.stopped_by)}"),
        ("refreshes sent before the breaker stopped the sweep", f"{attempts:,}"),
        ("time to trip", f"{tripped:.1f} s"),
        ("after the cool-down", recovery.line()),
        ("accounts lost (needs reconnect)", f"{marked} (target ≤ 3)"),
    ]


def run_memory(bench):
    """Peaks of two sweeps that differ only in size, with every account seeded beforehand.

    A first, unmeasured sweep of MEMORY_WARMUP accounts fills what CPython
    keeps for reuse (free lists of up to 2,000 tuples of each size, its type
    attribute cache), which would otherwise count against whichever sweep
    fills them. Automatic garbage collection is off meanwhile: it empties those
    free lists at random moments, and with it off a per-account reference
    cycle would show in the peak instead of being quietly collected.
    """
    bench.rate_limit(None)
    days = timedelta(days=1)
    bench.seed(MEMORY_WARMUP, expires_in=SEED_EXPIRES_IN)
    # Each set expires a day further out, and each window ends half a day after its set.
    windows = {}
    for offset, count in enumerate(MEMORY_SIZES, start=2):
        bench.seed(count, expires_in=int(offset * days.total_seconds()))
        windows[count] = (offset + 0.5) * days
    gc.collect()
    gc.disable()
    try:
        bench.sweep(within=days)
        peaks = {}
        for count in MEMORY_SIZES:
            tracemalloc.start()
            started = time.perf_counter()
            summary = bench.sweep(within=windows[count])
            elapsed = time.perf_counter() - started
            peaks[count] = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            assert summary.refreshed == count, summary.line()
            yield (f"peak at {count:,} accounts", f"{peaks[count] / 1024:,.0f} KiB ({summary.line()}, {elapsed:.1f} s)")
    finally:
        gc.enable()
    small, large = MEMORY_SIZES
    yield (f"ratio {large:,} / {small:,}", f"{peaks[large] / peaks[small]:.2f} (target ≤ 1.2)")


def table(rows, *, title, command, database):
    lines = [f"## {title}", "", f"`{command}`", "", f"Database: {database}", "", "| measure | value |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    return "\n".join(lines) + "\n"


def main():
    args = parse_args()
    with harness.database("bench-refresh-") as database_url, harness.standin(
        None if args.memory_check or args.slow_spell else args.rate
    ) as base_url:
        harness.setup_django(base_url, database_url)
        from django.conf import settings
        from django.db import connection

        bench = Bench(base_url, workers=args.workers, batch_size=args.batch_size)
        workers = args.workers if connection.features.has_select_for_update else "1 (SQLite: one refresh at a time)"
        cache = settings.CACHES["default"]["BACKEND"].rsplit(".", 2)[-2]
        database = f"{connection.vendor}, cache {cache}, workers {workers}, batch size {args.batch_size}"
        if args.slow_spell:
            rows = run_slow_spell(bench, accounts=args.accounts)
            title = f"refresh_tokens during a slow spell: {args.accounts:,} accounts"
        elif args.hosts:
            rows = run_hosts(bench, hosts=args.hosts, accounts=args.accounts, rate=args.rate)
            title = f"refresh_tokens on {args.hosts} hosts: {args.accounts:,} accounts at {args.rate:g} requests/second"
        elif args.memory_check:
            rows = list(run_memory(bench))
            title = "refresh_tokens: peak memory of the sweep"
        else:
            rows = run_rate(bench, accounts=args.accounts, rate=args.rate)
            title = f"refresh_tokens: {args.accounts:,} accounts at {args.rate:g} requests/second"
    text = table(rows, title=title, command=harness.command_line(), database=database)
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as results:
        results.write(text + "\n")
    print(f"appended to {RESULTS.relative_to(harness.REPO)}")


if __name__ == "__main__":
    main()
