"""A shared cache that is down or hung, through gunicorn: our 503s, never a 500, each within REQUEST_MAX_WAIT.

Two workers on PostgreSQL, started with ``CACHE_URL`` at a port where
nothing listens, at a server that accepts and never answers, or at a Redis
of the test's own that is killed once gunicorn answers (tests/faults.py).
The settings are the project's own: CACHE_CONNECT_TIMEOUT and CACHE_TIMEOUT
at their defaults reach redis-py through CACHES. The same in-process, on both
databases, is in tests/connectors/test_cache_down.py.
"""

import time
from contextlib import ExitStack

import pytest
import requests

from api.keys import service_key_create
from connectors.models import ConnectedAccount
from tests.faults import FAULTS, RedisServer, cache_down
from tests.helpers import SignedIn, child_env, gunicorn_serving, postgres_only, seed_account

pytestmark = postgres_only

# REQUEST_MAX_WAIT's default: every answer comes sooner, wire and gunicorn included.
MAX_WAIT = 5.0


def timed(call):
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def assert_service_unavailable(response):
    assert response.status_code == 503, response.text
    assert response.json()["code"] == "service_unavailable"
    assert int(response.headers["Retry-After"]) > 0


@pytest.mark.parametrize("fault", FAULTS)
def test_with_the_cache_down_every_answer_is_ours_and_in_time(transactional_db, standin, alice, tmp_path, fault):
    valid = seed_account(standin, alice, expires_in=3600)
    expiring = seed_account(standin, alice, expires_in=60)
    _, key = service_key_create(name="workflow-engine", scopes=["tokens:read"])
    headers = {"Authorization": f"Bearer {key}"}
    log_path = tmp_path / "gunicorn.log"

    with ExitStack() as stack:
        if fault == "killed":
            # Up while gunicorn starts and the person signs in, then killed: a cache that dies.
            redis_server = stack.enter_context(RedisServer())
            url = redis_server.url()
        else:
            url = stack.enter_context(cache_down(fault))
        base = stack.enter_context(gunicorn_serving({**child_env(standin), "CACHE_URL": url}, workers=2,
                                                    log_path=log_path))
        person = SignedIn(base, "alice", "pw-alice-123")
        if fault == "killed":
            redis_server.kill()

        answers = {
            "accounts page": timed(lambda: person.http.get(f"{base}/accounts/", timeout=30)),
            "health": timed(lambda: requests.get(f"{base}/api/v1/health", headers=headers, timeout=30)),
            "valid token": timed(lambda: requests.post(f"{base}/api/v1/accounts/{valid.pk}/token",
                                                       headers=headers, timeout=30)),
            "token needing a refresh": timed(lambda: requests.post(f"{base}/api/v1/accounts/{expiring.pk}/token",
                                                                   headers=headers, timeout=30)),
        }

    slow = {name: round(elapsed, 2) for name, (_, elapsed) in answers.items() if elapsed >= MAX_WAIT}
    assert not slow, slow
    page, health, token, refresh = (response for response, _ in answers.values())

    # The accounts page only shows notices from the cache: it renders, never a 500.
    assert page.status_code == 200, page.text
    assert "<h1>Connected accounts</h1>" in page.text
    assert_service_unavailable(health)
    assert token.status_code == 200, token.text
    assert token.json()["access_token"] == valid.access_token
    assert_service_unavailable(refresh)
    assert standin.count("token") == 0
    assert ConnectedAccount.objects.get(pk=expiring.pk).refresh_token == expiring.refresh_token

    log = log_path.read_text()
    assert "Internal Server Error" not in log and "Traceback" not in log
    assert "the API throttle let the request through: the shared cache failed" in log
    assert "health: the shared cache failed" in log
