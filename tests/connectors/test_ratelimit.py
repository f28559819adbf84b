"""The shared pace: permits every process agrees on, kept in Django's cache (database or Redis)."""

import threading
import time

import pytest
from django.core.cache import caches
from django.db import connections, router
from django.test.utils import CaptureQueriesContext

from connectors.exceptions import RateLimited
from connectors.ratelimit import HELD_MAX_WAIT, Limits, Pace, held_briefly
from tests.helpers import FakeClock

ROUTE = "POST /api/v10/oauth2/token"
SCOPE = "Basic client-credentials|"
FIVE_A_SECOND = Limits(bucket="token", limit=5, remaining=4, reset_after=1.0)
REDIS_URL = "redis://127.0.0.1:6379/14"


@pytest.fixture
def clock():
    return FakeClock()


def pace_on(clock, alias="default"):
    return Pace("test", cache_alias=alias, clock=clock.time, sleep=clock.sleep)


@pytest.fixture
def redis_cache(settings):
    """A Redis cache beside the default one, as CACHE_URL=redis://... configures it."""
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).flushdb()
    except redis.ConnectionError:
        pytest.skip("no Redis on 127.0.0.1:6379 (CI and the project's machines run one)")
    settings.CACHES = {
        **settings.CACHES,
        "redis": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL},
    }
    yield "redis"
    caches["redis"].close()


class Discord:
    """Fixed windows as Discord keeps them: one opens at the first request after the last one ended."""

    def __init__(self, now, *, limit=5, length=1.0):
        self.now, self.limit, self.length = now, limit, length
        self.end, self.used, self.refused = 0.0, 0, 0
        self.lock = threading.Lock()

    def answer(self):
        """(limits, refused) for a request arriving now."""
        with self.lock:
            now = self.now()
            if now >= self.end:
                self.end, self.used = now + self.length, 0
            refused = self.used >= self.limit
            if refused:
                self.refused += 1
            else:
                self.used += 1
            return Limits(bucket="token", limit=self.limit, remaining=self.limit - self.used,
                          reset_after=self.end - now, reset=f"{self.end:.3f}"), refused


def send(pace, discord, scope=SCOPE, max_wait=60):
    permit = pace.acquire(ROUTE, scope, max_wait=max_wait)
    limits, refused = discord.answer()
    if refused:
        pace.refused(permit, limits, retry_after=limits.reset_after, is_global=False)
    else:
        pace.observe(permit, limits)
    return not refused


ME = "GET /api/v10/users/@me"
BEARER = "Bearer one-person|"


@pytest.fixture
def cache_writes():
    """The statements that write the database cache, as a list filled while the test runs."""
    cache = caches["default"]
    with CaptureQueriesContext(connections[router.db_for_write(cache.cache_model_class)]) as captured:
        yield lambda: [q["sql"] for q in captured.captured_queries
                       if q["sql"].startswith(("INSERT", "UPDATE", "DELETE"))]


def learn(pace, limits=FIVE_A_SECOND):
    """One request's worth of knowledge: the route's bucket and its window."""
    pace.observe(pace.acquire(ROUTE, SCOPE, max_wait=1), limits)


def test_a_route_never_seen_is_probed_by_one_request_while_the_others_wait(clock):
    first, second = pace_on(clock), pace_on(clock)
    probe = first.acquire(ROUTE, SCOPE, max_wait=1)

    with pytest.raises(RateLimited):
        second.acquire(ROUTE, SCOPE, max_wait=0.1)

    first.observe(probe, FIVE_A_SECOND)
    assert second.acquire(ROUTE, SCOPE, max_wait=1).bucket


def test_a_probe_that_fails_lets_the_next_request_probe_at_once(clock):
    pace = pace_on(clock)
    pace.release(pace.acquire(ROUTE, SCOPE, max_wait=1))

    pace.acquire(ROUTE, SCOPE, max_wait=0)

    assert clock.waits == []


@pytest.mark.parametrize("alias", ["default", "redis"])
def test_two_processes_send_the_limit_in_each_window_and_never_more(clock, alias, request):
    if alias == "redis":
        alias = request.getfixturevalue("redis_cache")
    hosts = [pace_on(clock, alias), pace_on(clock, alias)]
    discord = Discord(clock.time)
    sent = []
    for turn in range(20):
        assert send(hosts[turn % 2], discord)
        sent.append(clock.now)

    assert discord.refused == 0
    # Five a second, as allowed: 20 requests in four windows.
    assert sent[-1] - sent[0] < 3.1


def test_requests_wait_for_the_window_to_end_not_for_a_429(clock):
    pace, discord = pace_on(clock), Discord(clock.time)
    for _ in range(5):
        send(pace, discord)
    assert clock.waits == []

    send(pace, discord)

    assert discord.refused == 0
    assert sum(clock.waits) == pytest.approx(1.0, abs=0.05)


def test_each_credential_has_its_own_window(clock):
    pace, discord = pace_on(clock), Discord(clock.time)
    for _ in range(5):
        send(pace, discord)

    pace.observe(pace.acquire(ROUTE, "Bearer someone-else|", max_wait=0), FIVE_A_SECOND)

    assert clock.waits == []


def test_one_process_alone_writes_nothing_but_its_permit(clock, cache_writes):
    pace, discord = pace_on(clock), Discord(clock.time)
    send(pace, discord)
    written = len(cache_writes())

    for _ in range(3):  # the fifth would spend the window, which is noted
        send(pace, discord)

    assert len(cache_writes()) - written == 3
    assert all("permit" in sql for sql in cache_writes()[written:])


def test_close_to_its_end_a_window_gives_permits_only_while_half_used(clock):
    pace = pace_on(clock)
    learn(pace, Limits(bucket="token", limit=10, remaining=9, reset_after=1.0, reset="1800000001.000"))
    clock.now += 0.95

    for _ in range(4):
        pace.acquire(ROUTE, SCOPE, max_wait=1)
    assert clock.waits == []

    pace.acquire(ROUTE, SCOPE, max_wait=1)
    assert sum(clock.waits) == pytest.approx(0.05, abs=0.01)


def test_a_persons_token_keeps_no_window(clock, cache_writes):
    """Only the code holding the account sends with it: once the route is known, nothing is written."""
    pace = pace_on(clock)
    pace.observe(pace.acquire(ME, BEARER, max_wait=1, shared=False), FIVE_A_SECOND)
    written = len(cache_writes())

    for person in range(3):
        permit = pace.acquire(ME, f"Bearer person-{person}|", max_wait=0, shared=False)
        pace.observe(permit, FIVE_A_SECOND)

    assert cache_writes()[written:] == []
    assert clock.waits == []


def test_a_persons_spent_token_waits_for_its_window_in_every_process(clock):
    one, two = pace_on(clock), pace_on(clock)
    spent = Limits(bucket="me", limit=5, remaining=0, reset_after=0.8, reset="1800000000.800")
    one.observe(one.acquire(ME, BEARER, max_wait=1, shared=False), spent)

    two.acquire(ME, "Bearer someone-else|", max_wait=0, shared=False)
    assert clock.waits == []
    two.acquire(ME, BEARER, max_wait=1, shared=False)
    assert sum(clock.waits) == pytest.approx(0.8, abs=0.05)


def test_a_window_someone_else_spent_is_not_claimed_from(clock):
    pace = pace_on(clock)
    spent = Limits(bucket="token", limit=5, remaining=0, reset_after=0.8, reset="1800000000.800")
    pace.observe(pace.acquire(ROUTE, SCOPE, max_wait=1), spent)

    pace.acquire(ROUTE, SCOPE, max_wait=1)

    assert sum(clock.waits) == pytest.approx(0.8, abs=0.05)


def test_a_hold_from_a_429_is_kept_by_every_process(clock):
    one, two = pace_on(clock), pace_on(clock)
    learn(one)
    one.refused(one.acquire(ROUTE, SCOPE, max_wait=1), Limits(), retry_after=4.0, is_global=False)

    two.acquire(ROUTE, SCOPE, max_wait=60)

    assert sum(clock.waits) == pytest.approx(4.0, abs=0.3)
    assert two.acquire(ROUTE, "Basic another-application|", max_wait=0).bucket


def test_a_global_429_holds_every_route_and_scope(clock):
    pace = pace_on(clock)
    pace.refused(pace.acquire(ROUTE, SCOPE, max_wait=1), Limits(), retry_after=2.5, is_global=True)

    with pytest.raises(RateLimited) as caught:
        pace.acquire("GET /api/v10/users/@me", "Bearer someone|", max_wait=1)
    assert caught.value.retry_after == pytest.approx(2.5)


def test_a_long_wait_is_not_taken_while_a_lock_is_held(clock):
    pace = pace_on(clock)
    learn(pace)
    pace.refused(pace.acquire(ROUTE, SCOPE, max_wait=1), Limits(), retry_after=HELD_MAX_WAIT + 5,
                 is_global=False)

    with held_briefly(), pytest.raises(RateLimited):
        pace.acquire(ROUTE, SCOPE, max_wait=60)
    assert clock.waits == []


def test_permits_claimed_by_many_threads_at_once_are_never_shared(redis_cache):
    """Real threads, real time, real Redis: 8 workers, 40 requests, 20 a second allowed."""
    pace = Pace("threads", cache_alias=redis_cache)
    discord = Discord(time.time, limit=20)
    results, errors = [], []
    barrier = threading.Barrier(8)

    def worker():
        try:
            barrier.wait(timeout=10)
            for _ in range(5):
                results.append(send(pace, discord, max_wait=10))
        except Exception as error:
            errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert errors == []
    assert len(results) == 40
    assert discord.refused <= 1
    assert time.monotonic() - started < 3.5
