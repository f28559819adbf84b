"""Benchmark of the HTTP API's token endpoint beside its health check (not a test).

Run from the repository root (``make bench-api`` does):

    python bench/api.py                 # 3 rounds of 1,000 calls per endpoint
    python bench/api.py --calls 300     # a first look

The app is served by gunicorn, as in production, against the Discord
stand-in in its own process; the database is a temporary SQLite file unless
DATABASE_URL names another (empty) one. One service key makes every call.

- Per worker: one gunicorn worker serves ``POST /api/v1/accounts/<id>/token``
  for an account whose token is valid, and ``GET /api/v1/health``, in
  alternating rounds so that a noisy spell on the machine hits both alike.
  Each round times calls one at a time (the median and p95 a caller sees,
  connection included: a sync worker closes it after each answer), then
  keeps the worker busy from two client threads for the same number of calls
  (requests per second). The stand-in must receive nothing meanwhile.
- Statements: each endpoint's SQL, counted in this process through Django's
  test client (the same settings), after a first call that wrote the key's
  last use.
- Refresh: ``--callers`` (20) threads ask at once, through ``--workers`` (4)
  gunicorn workers, for the token of an account that expires within the
  refresh margin; repeated ``--refresh-rounds`` times with a new account.
  Every caller must get the same new token, from one refresh.

The throttle is set out of reach (it still counts every call), and the log
line per token handed out is written, as in production. Results are printed
and written to bench/results/api.md.
"""

import argparse
import http.client
import json
import os
import statistics
import sys
import tempfile
import threading
import time

import harness

RATE = "100000000/min"
TARGET_RATIO = 1.5
# The database cache's own transaction around a throttle count (SQLite: BEGIN IMMEDIATE).
TRANSACTION_CONTROL = ("BEGIN", "COMMIT", "SAVEPOINT", "RELEASE")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1000, help="calls per endpoint and round (default 1000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per endpoint (default 3)")
    parser.add_argument("--callers", type=int, default=20, help="concurrent callers of an expiring token (default 20)")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers for the refresh part (default 4)")
    parser.add_argument("--refresh-rounds", type=int, default=5, help="expiring accounts asked for (default 5)")
    return parser.parse_args()


class Caller:
    """One service calling the API with its key, a new connection per call as with a sync worker."""

    def __init__(self, port, secret):
        self.port = port
        self.headers = {"Authorization": f"Bearer {secret}", "Content-Length": "0"}

    def call(self, method, path):
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request(method, path, headers=self.headers)
            answer = connection.getresponse()
            return answer.status, answer.read()
        finally:
            connection.close()


def timed_one_at_a_time(caller, method, path, calls):
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        status, body = caller.call(method, path)
        times.append(time.perf_counter() - started)
        if status != 200:
            sys.exit(f"{method} {path}: {status} {body[:200]!r}")
    return times


def throughput(caller, method, path, calls, threads=2):
    left = [calls]
    lock = threading.Lock()
    failures = []

    def work():
        while True:
            with lock:
                if left[0] == 0:
                    return
                left[0] -= 1
            status, body = caller.call(method, path)
            if status != 200:
                failures.append((status, body[:200]))

    elapsed = harness.run_together([threading.Thread(target=work) for _ in range(threads)])
    if failures:
        sys.exit(f"{method} {path}: {failures[:3]}")
    return calls / elapsed


def ms(seconds):
    return f"{seconds * 1000:.2f}"


class Bench:
    def __init__(self, base_url, database_url):
        import requests
        from django.contrib.auth import get_user_model

        from api.keys import service_key_create
        from api.models import ServiceKey
        from connectors.models import ConnectedAccount
        from standin.dev import store_standin_credentials

        self.base_url = base_url
        self.control = requests.Session()
        store_standin_credentials()
        if ConnectedAccount.objects.exists() or ServiceKey.objects.exists():
            sys.exit("DATABASE_URL holds accounts or keys already; use an empty database.")
        self.user = get_user_model().objects.create_user(f"bench-api-{time.time_ns()}")
        self.key, self.secret = service_key_create(name="bench", scopes=["tokens:read"])
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "DATABASE_URL": database_url,
            "PYTHONPATH": str(harness.REPO),
            "API_THROTTLE_RATE": RATE,
            "LOG_LEVEL": "INFO",
        }

    def stats(self):
        return self.control.get(f"{self.base_url}/_standin/stats", timeout=10).json()["counts"]

    def account(self, *, expires_in):
        from datetime import timedelta

        from django.utils import timezone

        from connectors.models import ConnectedAccount

        answer = self.control.post(
            f"{self.base_url}/_standin/grants",
            json={"count": 1, "scopes": "identify guilds", "expires_in": expires_in},
            timeout=30,
        )
        answer.raise_for_status()
        [grant] = answer.json()
        return ConnectedAccount.objects.create(
            user=self.user, service_id=harness.SERVICE_ID, uid=grant["user_id"],
            access_token=grant["access_token"], refresh_token=grant["refresh_token"],
            scopes=grant["scope"], expires_at=timezone.now() + timedelta(seconds=grant["expires_in"]),
        )

    def statements(self, token_path):
        """Each endpoint's SQL statements, and those of the token call that touch no key or cache."""
        from contextlib import ExitStack

        from django.db import connections
        from django.test import Client
        from django.test.utils import CaptureQueriesContext

        client = Client(HTTP_AUTHORIZATION=f"Bearer {self.secret}", HTTP_HOST="127.0.0.1")
        client.get("/api/v1/health")
        counted = {}
        for name, call in (("health", lambda: client.get("/api/v1/health")),
                           ("token", lambda: client.post(token_path))):
            # Every alias: on PostgreSQL the database cache has a connection of its own.
            with ExitStack() as stack:
                captures = [stack.enter_context(CaptureQueriesContext(connections[alias])) for alias in connections]
                assert call().status_code == 200
            counted[name] = [query["sql"] for capture in captures for query in capture.captured_queries]
        beyond = [
            sql for sql in counted["token"]
            if not any(word in sql for word in ("api_servicekey", "backoffice_cache"))
            and not sql.startswith(TRANSACTION_CONTROL)
        ]
        return len(counted["health"]), len(counted["token"]), beyond

    def per_worker(self, calls, rounds, log):
        account = self.account(expires_in=86400)
        token_path = f"/api/v1/accounts/{account.pk}/token"
        statements = self.statements(token_path)
        before = self.stats()
        measured = {"health": {"times": [], "rps": []}, "token": {"times": [], "rps": []}}
        with harness.gunicorn(self.env, workers=1, log=log) as port:
            caller = Caller(port, self.secret)
            endpoints = {"health": ("GET", "/api/v1/health"), "token": ("POST", token_path)}
            for method, path in endpoints.values():
                timed_one_at_a_time(caller, method, path, 50)
            for _ in range(rounds):
                for name, (method, path) in endpoints.items():
                    measured[name]["times"] += timed_one_at_a_time(caller, method, path, calls)
                    measured[name]["rps"].append(throughput(caller, method, path, calls))
        provider_calls = sum(self.stats().values()) - sum(before.values())
        return measured, statements, provider_calls

    def refresh(self, callers, workers, rounds, log):
        results = []
        with harness.gunicorn(self.env, workers=workers, log=log) as port:
            caller = Caller(port, self.secret)
            for _ in range(rounds):
                account = self.account(expires_in=60)
                path = f"/api/v1/accounts/{account.pk}/token"
                before = self.stats().get("token.refresh_token", 0)
                barrier = threading.Barrier(callers)
                answers = []

                def call():
                    barrier.wait(timeout=30)
                    answers.append(caller.call("POST", path))

                elapsed = harness.run_together([threading.Thread(target=call) for _ in range(callers)])
                tokens = {json.loads(body)["access_token"] for status, body in answers if status == 200}
                results.append({
                    "ok": sum(status == 200 for status, _ in answers),
                    "tokens": len(tokens),
                    "new": account.access_token not in tokens,
                    "refreshes": self.stats().get("token.refresh_token", 0) - before,
                    "elapsed": elapsed,
                })
        return results


def report(args, database_url, measured, statements, provider_calls, refreshes):
    health, token = measured["health"], measured["token"]
    health_median, token_median = statistics.median(health["times"]), statistics.median(token["times"])
    ratio = token_median / health_median

    def p95(times):
        return statistics.quantiles(times, n=20)[-1]

    health_statements, token_statements, beyond = statements
    lines = [
        f"# bench/api.py, {time.strftime('%Y-%m-%d %H:%M')}",
        "",
        f"`{harness.command_line()}` on {'PostgreSQL' if database_url.startswith('postgres') else 'SQLite'}",
        "",
        "| measure | GET /api/v1/health | POST /api/v1/accounts/<id>/token (valid token) |",
        "| --- | --- | --- |",
        f"| one at a time, median / p95 (ms) | {ms(health_median)} / {ms(p95(health['times']))} | "
        f"{ms(token_median)} / {ms(p95(token['times']))} |",
        f"| requests per second, one gunicorn worker (rounds) | "
        f"{' / '.join(f'{r:.0f}' for r in health['rps'])} | {' / '.join(f'{r:.0f}' for r in token['rps'])} |",
        f"| SQL statements per call | {health_statements} | {token_statements} "
        f"({len(beyond)} beyond the key and the throttle) |",
        "",
        f"Token / health median: {ratio:.2f}× (target ≤ {TARGET_RATIO}×: {'met' if ratio <= TARGET_RATIO else 'missed'}); "
        f"requests to the provider meanwhile: {provider_calls}.",
        f"Statements beyond the key and the throttle: {beyond}",
        "",
        f"Expiring token, {args.callers} callers at once through {args.workers} workers:",
        "",
        "| round | answered 200 | distinct tokens | new token | refreshes at the stand-in | until all held it |",
        "| --- | --- | --- | --- | --- | --- |",
        *(
            f"| {n} | {r['ok']} | {r['tokens']} | {'yes' if r['new'] else 'no'} | {r['refreshes']} | "
            f"{r['elapsed'] * 1000:.0f} ms |"
            for n, r in enumerate(refreshes, start=1)
        ),
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    harness.RESULTS.mkdir(parents=True, exist_ok=True)
    (harness.RESULTS / "api.md").write_text(text)


def main():
    args = parse_args()
    with harness.standin() as base_url, harness.database("bench-api-") as database_url:
        harness.setup_django(base_url, database_url, API_THROTTLE_RATE=RATE)
        bench = Bench(base_url, database_url)
        with tempfile.TemporaryFile("w+") as log:
            measured, statements, provider_calls = bench.per_worker(args.calls, args.rounds, log)
            refreshes = bench.refresh(args.callers, args.workers, args.refresh_rounds, log)
        report(args, database_url, measured, statements, provider_calls, refreshes)


if __name__ == "__main__":
    main()
