"""Benchmark of the connect flow's requests against their floors (not a test).

Run from the repository root (``make bench-flow`` does):

    python bench/flow.py                           # SQLite, 300 rounds, 400 flows
    python bench/flow.py --quick                   # 100 rounds, 160 flows: a first look
    python bench/flow.py --postgres postgres://postgres@127.0.0.1:5432/postgres
                                                   # SQLite, then the same on PostgreSQL
    python bench/flow.py --profile                 # and cProfile of 200 of each request

gunicorn serves the site (DEBUG off, sync workers, as in production) with
bench/flow_urls.py's one addition: a bare view that reads the session and
the user and answers. The Discord stand-in answers in its own process. Every
time is what a client sees, connection included (a sync worker closes it
after each answer), taken in alternating rounds so that a noisy spell on the
machine hits every request alike.

- Pages: the bare view, the connect redirect and the accounts page of a user
  with 10 accounts, each as a ratio to the bare view (target ≤ 1.5×).
- The callback, for a new identity and for one identity connected again.
  Its floor is measured in the same rounds: the bare view, plus the same
  calls to the stand-in made from a plain ``requests`` session (the code
  exchange, the profile, and for a reconnect the revocation of the replaced
  grant), plus one commit of an account row from this process. Target:
  the callback's median ≤ 1.3× its floor's.
- Complete flows per second (connect, consent at the stand-in, callback,
  accounts page): one client in a row, and 8 clients at once, against 2
  workers.
- Statements and values decrypted (configuration values and tokens) per
  request, counted in this process through Django's test client on the same
  settings and database: the median of 7 of each, with the fewest and most
  (a callback that opens the provider's next rate-limit window writes more).

Each database runs in a process of its own (``--one``); the table is printed
and written to bench/results/flow.md.
"""

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack, contextmanager
from urllib.parse import parse_qs, urlsplit

import harness

CONNECT = "/auth/discord/connect"
CALLBACK = "/auth/discord/callback"
ACCOUNTS = "/accounts/"
BARE = "/_bench/bare"
TARGET_CALLBACK = 1.3
TARGET_PAGE = 1.5
PAGE_ACCOUNTS = 10
CLIENTS = 8
PROFILED = 200
# Requests of each kind whose statements are counted; the table gives the median one.
SAMPLES = 7


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100 rounds and 160 flows instead of 300 and 400")
    parser.add_argument("--postgres", metavar="URL",
                        help="a PostgreSQL server (any database on it) to run on after SQLite")
    parser.add_argument("--profile", action="store_true", help="cProfile 200 of each request into bench/results/")
    parser.add_argument("--one", nargs=2, metavar=("LABEL", "DATABASE_URL"), help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    return parser.parse_args()


def median(values):
    return statistics.median(values)


def p95(values):
    return statistics.quantiles(values, n=20)[-1]


@contextmanager
def postgres_database(server_url):
    """A new, empty database on the PostgreSQL server of ``server_url``, dropped afterwards."""
    import psycopg

    parts = urlsplit(server_url)
    name = f"bench_flow_{os.getpid()}"
    admin = parts._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield parts._replace(path=f"/{name}").geturl()
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Bench:
    """One database: the users, the sessions and the requests of every measure."""

    def __init__(self, base_url, database_url, rounds, flows):
        import requests

        from connectors.config import config_values
        from standin.dev import store_standin_credentials

        self.base_url = base_url
        self.api = f"{base_url}/api/v10"
        self.rounds, self.flows = rounds, flows
        store_standin_credentials()
        values = config_values(harness.SERVICE_ID)
        self.client_auth = (values["clientId"], values["clientSecret"])
        self.control = requests.Session()
        self.plain = requests.Session()
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "bench.flow_settings",
            "DATABASE_URL": database_url,
            "PYTHONPATH": str(harness.REPO),
            # As in production: a line per flow started and per account connected.
            "LOG_LEVEL": "INFO",
        }
        self._users = 0
        self.page_user = self.user()
        self.seed(self.page_user, PAGE_ACCOUNTS)
        self.reconnect_user = self.user()
        self.decrypts = harness.DecryptCount()

    # set-up

    def user(self):
        from django.contrib.auth import get_user_model

        self._users += 1
        return get_user_model().objects.create(username=f"bench-flow-{self._users}", password="!")

    def seed(self, user, count):
        import secrets
        from datetime import timedelta

        from django.utils import timezone

        from connectors.models import ConnectedAccount

        ConnectedAccount.objects.bulk_create(
            ConnectedAccount(
                user=user, service_id=harness.SERVICE_ID, uid=str(3 * 10**17 + i), username=f"seed{i}",
                display_name=f"Seed {i}", access_token=secrets.token_urlsafe(22),
                refresh_token=secrets.token_urlsafe(22), scopes="identify bot applications.commands",
                expires_at=timezone.now() + timedelta(days=7),
            )
            for i in range(count)
        )

    def browser(self, user=None):
        """A requests session logged in as ``user`` (a new user if None)."""
        return harness.browser_of(user or self.user())

    # requests

    @staticmethod
    def timed(call, *args, **kwargs):
        started = time.perf_counter()
        answer = call(*args, **kwargs)
        return time.perf_counter() - started, answer

    def consent(self, location):
        """The stand-in's consent, clicked: the callback's path and query."""
        return harness.consent(self.control, self.base_url, location)

    def flow(self, server, browser, *, page=True):
        """One complete flow; the times of the connect and the callback."""
        took_connect, answer = self.timed(browser.get, server + CONNECT, allow_redirects=False)
        assert answer.status_code == 302, answer.text[:300]
        callback = self.consent(answer.headers["Location"])
        took_callback, answer = self.timed(browser.get, server + callback, allow_redirects=False)
        assert answer.status_code == 302 and answer.headers["Location"] == ACCOUNTS, answer.text[:500]
        if page:
            answer = browser.get(server + ACCOUNTS)
            assert answer.status_code == 200 and "Connected Discord account" in answer.text, answer.text[:500]
        return took_connect, took_callback

    def floor_calls(self, server, browser, *, reconnect):
        """The callback's calls to the stand-in from a plain session: their times by name."""
        answer = browser.get(server + CONNECT, allow_redirects=False)
        callback = self.consent(answer.headers["Location"])
        query = {k: v[0] for k, v in parse_qs(urlsplit(callback).query).items()}
        from connectors.registry import registry

        redirect_uri = registry.get(harness.SERVICE_ID).redirect_url()
        took = {}
        took["exchange"], answer = self.timed(
            self.plain.post, f"{self.api}/oauth2/token", auth=self.client_auth, timeout=10,
            data={"grant_type": "authorization_code", "code": query["code"], "redirect_uri": redirect_uri},
        )
        token = answer.json()
        assert answer.status_code == 200, token
        took["profile"], answer = self.timed(
            self.plain.get, f"{self.api}/users/@me", timeout=10,
            headers={"Authorization": f"Bearer {token['access_token']}"},
        )
        assert answer.status_code == 200, answer.text
        if reconnect:
            took["revoke"], answer = self.timed(
                self.plain.post, f"{self.api}/oauth2/token/revoke", auth=self.client_auth, timeout=10,
                data={"token": token["refresh_token"], "token_type_hint": "refresh_token"},
            )
            assert answer.status_code == 200, answer.text
        return took

    def commit(self, account_id):
        """One commit of one account row, from this process."""
        from django.db import transaction

        from connectors.models import ConnectedAccount

        started = time.perf_counter()
        with transaction.atomic():
            ConnectedAccount.objects.filter(pk=account_id).update(display_name=f"Seed {time.time_ns()}")
        return time.perf_counter() - started

    # measures

    def per_request(self, port):
        server = f"http://127.0.0.1:{port}"
        page = self.browser(self.page_user)
        again = self.browser(self.reconnect_user)
        floor_browser = self.browser()
        fresh = [self.browser() for _ in range(self.rounds + 20)]
        account_id = self.page_user.connected_accounts.values_list("pk", flat=True).first()
        times = {name: [] for name in ("bare", "connect", "accounts", "callback new", "callback again",
                                       "exchange", "profile", "revoke", "commit")}
        for index, browser in enumerate(fresh):
            took = {}
            took["bare"], answer = self.timed(page.get, server + BARE)
            assert answer.status_code == 200, answer.text[:300]
            took["connect"], took["callback new"] = self.flow(server, browser, page=False)
            took["accounts"], answer = self.timed(page.get, server + ACCOUNTS)
            assert answer.status_code == 200 and answer.text.count("Disconnect") >= PAGE_ACCOUNTS
            took["callback again"] = self.flow(server, again, page=False)[1]
            took.update(self.floor_calls(server, floor_browser, reconnect=True))
            took["commit"] = self.commit(account_id)
            if index >= 20:  # the first rounds warm the worker, the pools and the caches
                for name, value in took.items():
                    times[name].append(value)
        return times

    def flows_per_second(self, port):
        server = f"http://127.0.0.1:{port}"
        result = {}
        for _ in range(2):  # warm both workers
            self.flow(server, self.browser())
        browsers = [self.browser() for _ in range(self.flows)]
        started = time.perf_counter()
        for browser in browsers:
            self.flow(server, browser)
        result["new identity, 1 client"] = self.flows / (time.perf_counter() - started)
        again = self.browser(self.reconnect_user)
        started = time.perf_counter()
        for _ in range(self.flows):
            self.flow(server, again)
        result["one identity again, 1 client"] = self.flows / (time.perf_counter() - started)
        browsers = [self.browser() for _ in range(self.flows)]
        failures = []

        def client(mine):
            for browser in mine:
                try:
                    self.flow(server, browser)
                except Exception as error:  # a benchmark reports what went wrong
                    failures.append(repr(error)[:200])

        threads = [threading.Thread(target=client, args=(browsers[i::CLIENTS],)) for i in range(CLIENTS)]
        result[f"new identity, {CLIENTS} clients"] = self.flows / harness.run_together(threads)
        if failures:
            sys.exit(f"{len(failures)} flows failed with {CLIENTS} clients: {failures[:3]}")
        return result

    def test_client(self, user=None):
        """Django's test client in this process, logged in as ``user`` (a new user if None)."""
        from django.test import Client

        client = Client(HTTP_HOST="127.0.0.1")
        client.force_login(user or self.user())
        return client

    def callback_ready(self, client):
        """``client``'s callback, connect made and consent given, as a call still to be made."""
        url = self.consent(client.get(CONNECT)["Location"])
        return lambda: client.get(url)

    def counted(self):
        """Statements (all, and the cache's) and values decrypted, per request, through the test client."""
        from django.db import connections
        from django.test.utils import CaptureQueriesContext

        client, callback = self.test_client, self.callback_ready
        page, fresh = client(self.page_user), client()

        requests_ = {
            "bare view": [lambda: page.get(BARE)] * SAMPLES,
            "connect": [lambda: fresh.get(CONNECT)] * SAMPLES,
            "callback, new identity": [callback(client()) for _ in range(SAMPLES)],
            "callback, one identity again": [callback(client(self.reconnect_user)) for _ in range(SAMPLES)],
            f"accounts page ({PAGE_ACCOUNTS} accounts)": [lambda: page.get(ACCOUNTS)] * SAMPLES,
        }
        counts = {}
        for name, sends in requests_.items():
            samples = []
            for send in sends:
                self.decrypts.count = 0
                with ExitStack() as stack:
                    captures = {alias: stack.enter_context(CaptureQueriesContext(connections[alias]))
                                for alias in connections}
                    answer = send()
                assert answer.status_code in (200, 302), (name, answer.status_code)
                sql = [q["sql"] for capture in captures.values() for q in capture.captured_queries]
                # The cache's: on a connection of its own (PostgreSQL) all of it, else what names its table.
                cache = [q["sql"] for alias, capture in captures.items() for q in capture.captured_queries
                         if alias == "cache" or "backoffice_cache" in q["sql"]]
                samples.append({"statements": len(sql), "cache": len(cache), "decrypted": self.decrypts.count,
                                "sql": sql})
            samples.sort(key=lambda sample: sample["statements"])
            counts[name] = {**samples[len(samples) // 2],
                            "range": (samples[0]["statements"], samples[-1]["statements"])}
        return counts

    def profile(self):
        """cProfile of 200 of each: callback, connect, accounts page, bare view (in this process)."""
        callbacks = [self.callback_ready(self.test_client()) for _ in range(PROFILED)]
        page, connecting = self.test_client(self.page_user), self.test_client()
        harness.RESULTS.mkdir(parents=True, exist_ok=True)
        for name, calls in (
            ("callback", callbacks),
            ("connect", [lambda: connecting.get(CONNECT)] * PROFILED),
            ("accounts", [lambda: page.get(ACCOUNTS)] * PROFILED),
            ("bare", [lambda: page.get(BARE)] * PROFILED),
        ):
            profile = cProfile.Profile()
            for call in calls:
                profile.enable()
                call()
                profile.disable()
            out = io.StringIO()
            stats = pstats.Stats(profile, stream=out)
            stats.sort_stats("tottime").print_stats(40)
            stats.sort_stats("cumulative").print_stats(80)
            (harness.RESULTS / f"flow-profile-{name}.txt").write_text(out.getvalue())
            profile.dump_stats(harness.RESULTS / f"flow-{name}.prof")


def run_one(label, database_url, args, out):
    rounds, flows = (100, 160) if args.quick else (300, 400)
    with harness.standin() as base_url:
        harness.setup_django(base_url, database_url, settings_module="bench.flow_settings",
                             ALLOWED_HOSTS="127.0.0.1,testserver")
        from django.db import connection

        bench = Bench(base_url, database_url, rounds, flows)
        with tempfile.TemporaryFile("w+") as log:
            with harness.gunicorn(bench.env, workers=1, log=log, ready_path=BARE) as port:
                times = bench.per_request(port)
            with harness.gunicorn(bench.env, workers=2, log=log, ready_path=BARE) as port:
                rates = bench.flows_per_second(port)
        counts = bench.counted()
        if args.profile:
            bench.profile()
        result = {"label": label, "vendor": connection.vendor, "rounds": rounds, "flows": flows,
                  "times": times, "rates": rates, "counts": counts}
    with open(out, "w") as handle:
        json.dump(result, handle)


def render(results, elapsed):
    lines = [
        "## bench/flow.py: the connect flow's requests against their floors",
        "",
        f"`{harness.command_line()}`, {time.strftime('%Y-%m-%d %H:%M')}, {elapsed:.0f} s. "
        f"Machine: {platform.platform()}, Python {platform.python_version()}, {os.cpu_count()} CPUs.",
        "",
    ]
    for result in results:
        t = {name: median(values) for name, values in result["times"].items()}
        floor_new = t["bare"] + t["exchange"] + t["profile"] + t["commit"]
        floor_again = floor_new + t["revoke"]

        def row(name, value, floor, target, note=""):
            ratio = value / floor
            verdict = "meets" if ratio <= target else "MISSES"
            return (f"| {name} | {value * 1000:.2f} ms | {floor * 1000:.2f} ms | {ratio:.2f}× | "
                    f"{verdict} ≤ {target}× | {note} |")

        times = result["times"]
        lines += [
            f"### {result['label']}: one gunicorn worker, {result['rounds']} alternating rounds (medians)",
            "",
            "| request | median | against | ratio | target | note |",
            "|---|---|---|---|---|---|",
            f"| bare view (session and user) | {t['bare'] * 1000:.2f} ms | | | | p95 {p95(times['bare']) * 1000:.2f} ms |",
            row("connect redirect", t["connect"], t["bare"], TARGET_PAGE, "against the bare view"),
            row(f"accounts page, {PAGE_ACCOUNTS} accounts", t["accounts"], t["bare"], TARGET_PAGE,
                "against the bare view"),
            row("callback, new identity", t["callback new"], floor_new, TARGET_CALLBACK,
                f"floor: bare {t['bare'] * 1000:.2f} + exchange {t['exchange'] * 1000:.2f} + profile "
                f"{t['profile'] * 1000:.2f} + commit {t['commit'] * 1000:.2f} ms; p95 "
                f"{p95(times['callback new']) * 1000:.2f} ms"),
            row("callback, one identity again", t["callback again"], floor_again, TARGET_CALLBACK,
                f"floor adds the revocation, {t['revoke'] * 1000:.2f} ms; p95 "
                f"{p95(times['callback again']) * 1000:.2f} ms"),
            "",
            f"Complete flows per second against 2 workers ({result['flows']} flows each): "
            + "; ".join(f"{name}: {rate:.1f}" for name, rate in result["rates"].items()) + ".",
            "",
            f"| request ({SAMPLES} of each, the median one) | SQL statements (fewest–most) | of which the cache's | values decrypted |",
            "|---|---|---|---|",
        ]
        lines += [f"| {name} | {c['statements']} ({c['range'][0]}–{c['range'][1]}) | {c['cache']} | {c['decrypted']} |"
                  for name, c in result["counts"].items()]
        lines += ["", f"The SQL of a callback for a new identity ({result['vendor']}):", "", "```"]
        lines += [sql if len(sql) <= 110 else sql[:107] + "..."
                  for sql in result["counts"]["callback, new identity"]["sql"]]
        lines += ["```", ""]
    return "\n".join(lines)


def main():
    args = parse_args()
    if args.one:
        run_one(*args.one, args, args.out)
        return
    began = time.perf_counter()
    results = []
    with ExitStack() as stack:
        databases = [("SQLite", stack.enter_context(harness.database("bench-flow-")))]
        if args.postgres:
            databases.append(("PostgreSQL", stack.enter_context(postgres_database(args.postgres))))
        for label, url in databases:
            print(f"[{time.perf_counter() - began:4.0f} s] {label}…", flush=True)
            with tempfile.NamedTemporaryFile(suffix=".json") as out:
                extra = [arg for arg in ("--quick", "--profile") if getattr(args, arg[2:])]
                subprocess.run([sys.executable, __file__, "--one", label, url, "--out", out.name, *extra],
                               check=True, env={**os.environ, "LOG_LEVEL": "WARNING"})
                results.append(json.load(open(out.name)))
    text = render(results, time.perf_counter() - began)
    print(text)
    harness.RESULTS.mkdir(parents=True, exist_ok=True)
    (harness.RESULTS / "flow.md").write_text(text)
    print(f"written to {(harness.RESULTS / 'flow.md').relative_to(harness.REPO)}")


if __name__ == "__main__":
    main()
