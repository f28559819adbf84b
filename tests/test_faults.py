"""The fault tools do what they claim: the fault tests trust them to have broken something.

The PostgreSQL part connects with psycopg directly, not through Django's
connections: what is cut is a plain session, and nothing of Django's
test database or its transaction can hide the failure. (The conftest's
django_db marker stays: its autouse fixture empties the database cache.)
"""

import socket
import threading
import time

import pytest
import redis

from tests.faults import RedisServer, TcpProxy, at

POSTGRES = ("127.0.0.1", 5432)
POSTGRES_URL = "postgres://postgres@127.0.0.1:{port}/test"


@pytest.fixture
def redis_server():
    with RedisServer() as server:
        yield server


def client(server):
    return redis.Redis.from_url(server.url(), socket_timeout=1, socket_connect_timeout=1)


def refuses(port):
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def test_redis_answers_on_a_port_of_its_own(redis_server):
    assert redis_server.port != 6379
    assert redis_server.url(3) == f"redis://127.0.0.1:{redis_server.port}/3"
    r = client(redis_server)
    assert r.ping()
    r.set("key", "value")
    assert r.get("key") == b"value"


def test_after_kill_clients_fail_and_after_restart_the_same_url_answers_empty(redis_server):
    r = client(redis_server)
    r.set("key", "value")
    port, pid = redis_server.port, redis_server.process.pid
    redis_server.kill()
    assert redis_server.process.returncode == -9
    assert refuses(port)
    with pytest.raises(redis.ConnectionError):
        r.get("key")
    redis_server.restart()
    assert redis_server.port == port and redis_server.process.pid != pid
    assert r.ping()
    assert r.get("key") is None, "nothing persisted"


@pytest.fixture
def postgres():
    psycopg = pytest.importorskip("psycopg")
    try:
        psycopg.connect(POSTGRES_URL.format(port=POSTGRES[1]), connect_timeout=2).close()
    except psycopg.OperationalError as error:
        pytest.skip(f"PostgreSQL at {POSTGRES_URL.format(port=POSTGRES[1])} is not reachable: {error}")
    return psycopg


@pytest.fixture
def proxy():
    with TcpProxy(*POSTGRES) as proxy:
        yield proxy


def test_cut_drops_live_sessions_and_restore_lets_new_ones_through(postgres, proxy):
    url = POSTGRES_URL.format(port=proxy.port)
    with postgres.connect(POSTGRES_URL.format(port=POSTGRES[1]), autocommit=True) as direct:
        conn = postgres.connect(url, connect_timeout=2, autocommit=True)
        assert conn.execute("SELECT 1").fetchone() == (1,)
        assert conn.execute("SELECT length(repeat('x', 1000000))").fetchone() == (1000000,)
        assert len(conn.execute("SELECT repeat('x', 1000000)").fetchone()[0]) == 1000000
        backend = conn.info.backend_pid

        proxy.cut()
        with pytest.raises(postgres.OperationalError):
            conn.execute("SELECT 1")
        conn.close()
        # The server sees its client gone: the backend ends.
        deadline = time.monotonic() + 5
        while direct.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [backend]).fetchone():
            assert time.monotonic() < deadline, f"backend {backend} outlived the cut"
            time.sleep(0.05)

        started = time.monotonic()
        with pytest.raises(postgres.OperationalError):
            postgres.connect(url, connect_timeout=2)
        assert time.monotonic() - started < 1, "a new connection while cut should fail at once"

        proxy.restore()
        with postgres.connect(url, connect_timeout=2) as again:
            assert again.execute("SELECT 1").fetchone() == (1,)


def test_stop_closes_the_port(proxy):
    proxy.stop()
    assert refuses(proxy.port)


def test_at_runs_later_and_can_be_cancelled():
    fired = threading.Event()
    started = time.monotonic()
    timer = at(0.1, fired.set)
    timer.join(timeout=2)
    assert fired.is_set() and time.monotonic() - started >= 0.1

    cancelled = threading.Event()
    timer = at(0.1, cancelled.set)
    timer.cancel()
    timer.join(timeout=2)
    assert not cancelled.is_set()


def test_at_join_raises_what_the_action_raised():
    def broken():
        raise RuntimeError("the fault did not happen")

    with pytest.raises(RuntimeError, match="did not happen"):
        at(0, broken).join(timeout=2)
