"""A shared cache that is down or hung from the start is our 503, never a 500, and never a long wait.

Three ways for ``CACHE_URL`` to be down, as they happen (tests/faults.py):
a port where nothing listens (every connect refused at once), a server that
accepts connections and never answers (a hung cache: only our own
CACHE_CONNECT_TIMEOUT and CACHE_TIMEOUT end the wait), and a Redis of the
test's own, killed. Through Django's test client on both databases; the same
through gunicorn is in tests/production/test_cache_down.py.

What must hold: pages answer 200 or our 503 page, the API 503
``service_unavailable`` with Retry-After where it needs the cache, the
throttles let requests through with a WARNING, nothing is sent to the
provider without the pace and the breaker, and every answer comes within
REQUEST_MAX_WAIT.
"""

import json
import logging
import os
import time
from contextlib import contextmanager
from urllib.parse import urlsplit

import pytest
import redis
from axes.models import AccessAttempt
from django.conf import settings as django_settings
from django.core.cache import cache
from django.db import connection

from api.throttling import ServiceKeyThrottle
from connectors.cache import CACHE_ERRORS, cache_fail_open
from connectors.models import ConnectedAccount
from tests.faults import FAULTS, HangingServer, cache_down
from tests.helpers import PRODUCTION, manage, seed_account

def redis_cache(url):
    """CACHES for a Redis at ``url``, with the timeouts backoffice/settings.py gives a CACHE_URL."""
    return {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": url,
            "OPTIONS": {
                "socket_connect_timeout": django_settings.CACHE_CONNECT_TIMEOUT,
                "socket_timeout": django_settings.CACHE_TIMEOUT,
            },
        }
    }


@pytest.fixture(params=FAULTS)
def down(request, settings):
    """Django's cache down in one of three ways; the parameter names which."""
    with cache_down(request.param) as url:
        settings.CACHES = redis_cache(url)
        yield request.param


@contextmanager
def within_max_wait():
    """The block, timed: it must end within REQUEST_MAX_WAIT, hung cache or not."""
    started = time.monotonic()
    yield
    elapsed = time.monotonic() - started
    assert elapsed < django_settings.REQUEST_MAX_WAIT, f"answered after {elapsed:.1f} s"


def throttle_warnings(caplog):
    return [r for r in caplog.records if r.levelno == logging.WARNING and "the API throttle" in r.getMessage()]


def assert_service_unavailable(response):
    assert response.status_code == 503, response.content
    assert response.json()["code"] == "service_unavailable"
    assert int(response["Retry-After"]) > 0


def test_the_accounts_page_renders(client_alice, standin, alice, down):
    seed_account(standin, alice, expires_in=3600)

    with within_max_wait():
        response = client_alice.get("/accounts/")

    assert response.status_code == 200


def test_the_api_health_says_the_cache_is_down(api, down, caplog):
    caplog.set_level(logging.WARNING)

    with within_max_wait():
        response = api.get("/api/v1/health")

    assert_service_unavailable(response)
    assert "shared cache" in response.json()["message"]
    assert len(throttle_warnings(caplog)) == 1


def test_the_healths_503_is_in_the_published_schema(api, client, settings):
    from openapi_core import OpenAPI
    from openapi_core.contrib.django import DjangoOpenAPIRequest, DjangoOpenAPIResponse

    spec = OpenAPI.from_dict(client.get("/api/v1/schema", {"format": "json"}).json())
    with cache_down("refused") as url:
        settings.CACHES = redis_cache(url)
        response = api.get("/api/v1/health")

    assert_service_unavailable(response)
    request = DjangoOpenAPIRequest(response.wsgi_request)
    spec.validate_request(request)
    spec.validate_response(request, DjangoOpenAPIResponse(response))


def test_a_valid_token_is_still_handed_out(api, standin, alice, down, caplog):
    account = seed_account(standin, alice, expires_in=3600)
    caplog.set_level(logging.WARNING)

    with within_max_wait():
        response = api.post(f"/api/v1/accounts/{account.pk}/token")

    assert response.status_code == 200, response.content
    assert response.json()["access_token"] == account.access_token
    assert standin.calls == []
    # The throttle let it through, and said so once.
    [warning] = throttle_warnings(caplog)
    assert "let the request through" in warning.getMessage()


def test_a_token_that_needs_a_refresh_is_ours_to_refuse_and_nothing_is_sent(api, standin, alice, down):
    account = seed_account(standin, alice, expires_in=60)

    with within_max_wait():
        response = api.post(f"/api/v1/accounts/{account.pk}/token")

    assert_service_unavailable(response)
    assert standin.count("token") == 0
    stored = ConnectedAccount.objects.get(pk=account.pk)
    assert stored.status == ConnectedAccount.Status.ACTIVE and stored.last_error == ""
    assert stored.refresh_token == account.refresh_token


def test_sign_in_and_its_lockout_count_use_no_cache(client, alice, down, settings):
    """django-axes keeps its counts with the database handler: a dead cache neither blocks a
    sign-in nor loses a failure."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    alice.set_password("pw-alice-123")
    alice.save()
    assert settings.AXES_HANDLER == "axes.handlers.database.AxesDatabaseHandler"

    with within_max_wait():
        failed = client.post("/accounts/login/", {"username": "alice", "password": "wrong"})
    assert failed.status_code == 200
    # Counted, in the database.
    assert AccessAttempt.objects.get(username="alice").failures_since_start == 1

    with within_max_wait():
        signed_in = client.post("/accounts/login/", {"username": "alice", "password": "pw-alice-123"})
    assert signed_in.status_code == 302
    assert client.session.get("_auth_user_id") == str(alice.pk)
    # And cleared by the success (AXES_RESET_ON_SUCCESS).
    assert not AccessAttempt.objects.filter(username="alice").exists()


def test_a_cache_that_answers_still_throttles(settings, service_key):
    """Failing open is only for while the cache fails: a cache that answers counts every call."""
    settings.API_THROTTLE_RATE = "1/min"
    key, _ = service_key

    class Request:
        auth = key

    assert ServiceKeyThrottle().allow_request(Request, None) is True
    refused = ServiceKeyThrottle()
    assert refused.allow_request(Request, None) is False
    assert refused.wait() >= 1


def test_cache_fail_open_hands_back_the_default_with_one_warning(settings, caplog):
    caplog.set_level(logging.WARNING, logger="connectors.cache")
    with cache_down("refused") as url:
        settings.CACHES = redis_cache(url)

        assert cache_fail_open("the sign-up throttle", cache.incr, "some-key") is None
        assert cache_fail_open("the sign-up throttle", cache.get, "some-key", default=7) == 7

    assert [r.getMessage() for r in caplog.records] == [
        "the sign-up throttle let the request through: the shared cache failed (ConnectionError)"
    ] * 2


def test_cache_fail_open_returns_what_the_cache_answers_and_lets_other_errors_through(caplog):
    caplog.set_level(logging.WARNING, logger="connectors.cache")
    cache.set("present", 3)

    assert cache_fail_open("a throttle", cache.get, "present") == 3
    with pytest.raises(ValueError):
        cache_fail_open("a throttle", cache.incr, "absent")
    assert caplog.records == []


def test_the_hanging_server_hangs_a_client_until_its_own_timeout():
    """What the hung cache tests stand on: the connect succeeds, the read waits, the timeout ends it."""
    with HangingServer() as server:
        client = redis.Redis.from_url(server.url(), socket_connect_timeout=0.3, socket_timeout=0.3)
        started = time.monotonic()
        with pytest.raises(redis.TimeoutError):
            client.get("key")
        assert 0.25 < time.monotonic() - started < 2
        assert isinstance(redis.TimeoutError(), CACHE_ERRORS)


def settings_in_child(code, **env):
    """Run ``code`` under the project's settings, in a child with only PRODUCTION and ``env``."""
    result = manage("shell", "-c", code, **{**PRODUCTION, **env})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


CACHES_AND_DATABASES = (
    "import json; from django.conf import settings; "
    "print(json.dumps({'caches': settings.CACHES, 'databases': {alias: db.get('OPTIONS', {}) "
    "for alias, db in settings.DATABASES.items()}}))"
)


def test_a_redis_cache_url_gets_the_connect_and_command_timeouts():
    default = settings_in_child(CACHES_AND_DATABASES, CACHE_URL="redis://127.0.0.1:6379/0")["caches"]["default"]
    assert default["OPTIONS"] == {"socket_connect_timeout": 1.0, "socket_timeout": 2.0}

    chosen = settings_in_child(
        CACHES_AND_DATABASES, CACHE_URL="redis://127.0.0.1:6379/0", CACHE_CONNECT_TIMEOUT="0.5", CACHE_TIMEOUT="1.5"
    )["caches"]["default"]
    assert chosen["OPTIONS"] == {"socket_connect_timeout": 0.5, "socket_timeout": 1.5}

    # A timeout the URL itself names is the operator's word for this cache, and wins.
    named = settings_in_child(CACHES_AND_DATABASES, CACHE_URL="redis://127.0.0.1:6379/0?socket_timeout=4")
    assert named["caches"]["default"]["OPTIONS"] == {"socket_connect_timeout": 1.0, "socket_timeout": 4}


def test_the_database_caches_own_connection_gets_the_timeouts_and_the_default_connection_none():
    options = settings_in_child(
        CACHES_AND_DATABASES, DATABASE_URL="postgres://backoffice@db.internal:5432/backoffice"
    )["databases"]
    assert options["cache"] == {"connect_timeout": 1, "options": "-c synchronous_commit=off -c statement_timeout=2000"}
    assert options["default"] == {}

    options = settings_in_child(
        CACHES_AND_DATABASES, DATABASE_URL="postgres://backoffice@db.internal:5432/backoffice?connect_timeout=30",
        CACHE_CONNECT_TIMEOUT="2.5", CACHE_TIMEOUT="0.25",
    )["databases"]
    assert options["cache"]["connect_timeout"] == 3
    assert options["cache"]["options"] == "-c synchronous_commit=off -c statement_timeout=250"
    assert options["default"] == {"connect_timeout": 30}


@pytest.mark.parametrize("name, value", [("CACHE_TIMEOUT", "0"), ("CACHE_CONNECT_TIMEOUT", "-1")])
def test_a_timeout_that_is_not_positive_stops_start_up(name, value):
    result = manage("check", **{**PRODUCTION, name: value})
    assert result.returncode != 0
    assert f"{name}={float(value):g} is not a number of seconds above 0" in result.stderr


def test_on_postgresql_a_statement_of_the_cache_ends_at_cache_timeout(db):
    """The database cache's connection, hung on a statement, gives up after CACHE_TIMEOUT; the default
    connection is not limited (a refresh's row lock may rightly be waited for)."""
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL; runs in CI's PostgreSQL pass (DATABASE_URL=postgres://...)")
    url = urlsplit(os.environ["DATABASE_URL"])._replace(path=f"/{connection.settings_dict['NAME']}").geturl()
    code = (
        "import json, time\n"
        "from django.db import DatabaseError, connections\n"
        "seen = {}\n"
        "for alias in ('default', 'cache'):\n"
        "    with connections[alias].cursor() as cursor:\n"
        "        cursor.execute('SHOW statement_timeout')\n"
        "        seen[alias] = cursor.fetchone()[0]\n"
        "started = time.monotonic()\n"
        "try:\n"
        "    with connections['cache'].cursor() as cursor:\n"
        "        cursor.execute('SELECT pg_sleep(5)')\n"
        "except DatabaseError as error:\n"
        "    seen['error'] = type(error).__name__\n"
        "seen['waited'] = time.monotonic() - started\n"
        "print(json.dumps(seen))\n"
    )
    seen = settings_in_child(code, DATABASE_URL=url, CACHE_TIMEOUT="0.5")
    assert seen["default"] == "0" and seen["cache"] == "500ms"
    assert seen["error"] == "OperationalError"
    assert seen["waited"] < 2
