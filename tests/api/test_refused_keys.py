"""Refused service keys are throttled per client address: API_AUTH_FAILURE_RATE of them, then 429.

Only refusals count (a wrong, malformed or revoked key; not a call without
one), in the shared cache, so every worker and host adds to one count; a
valid key is never refused by it, from any address. The address is the one
the sign-in lock-out reads (LOGIN_IP_HEADER, LOGIN_PROXY_COUNT).
"""

import hashlib
import logging
import runpy
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests

import api.throttling
from api.keys import service_key_create, service_key_revoke
from tests.helpers import REPO, child_env, gunicorn_serving, postgres_only

WRONG = "Bearer bsk_not-a-key-at-all-000000000000000000000"


def assert_error(response, status, code):
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    assert response.json()["code"] == code
    return response.json()


@pytest.fixture
def frozen(monkeypatch):
    """The throttles' clock stopped 30 s into a minute, so that no window ends during the test."""
    now = (int(api.throttling.time.time()) // 60) * 60 + 30.0
    monkeypatch.setattr(api.throttling, "time", SimpleNamespace(time=lambda: now))
    return now


def refuse(client, times, **extra):
    """Present a wrong key ``times`` times; the answers."""
    return [client.get("/api/v1/health", HTTP_AUTHORIZATION=WRONG, **extra) for _ in range(times)]


def test_past_the_rate_refusals_get_429_with_retry_after_and_a_valid_key_still_passes(
    api, client, settings, frozen, caplog
):
    settings.API_AUTH_FAILURE_RATE = "3/min"
    for response in refuse(client, 3):
        assert_error(response, 401, "invalid_key")
        assert response["WWW-Authenticate"].startswith("Bearer")

    with caplog.at_level(logging.WARNING, logger="api.auth"):
        throttled = refuse(client, 1)[0]
        # A malformed header is a refusal as well; so is the token endpoint's.
        malformed = client.get("/api/v1/health", HTTP_AUTHORIZATION="Basic dXNlcjpwYXNz")
        on_token = client.post("/api/v1/accounts/7/token", HTTP_AUTHORIZATION=WRONG)

    body = assert_error(throttled, 429, "throttled")
    assert throttled["Retry-After"] == "30"
    assert body["message"] == "Too many refused service keys from this address. Expected available in 30 seconds."
    for response in (malformed, on_token):
        assert_error(response, 429, "throttled")
    [warning] = [record.getMessage() for record in caplog.records if record.name == "api.auth"]
    assert "refused service keys from 127.0.0.1" in warning and "API_AUTH_FAILURE_RATE=3/min" in warning
    # The same address with a valid key: never refused by the count, nor counted.
    for _ in range(5):
        assert api.get("/api/v1/health").status_code == 200


def test_only_refusals_count(api, client, settings, frozen):
    settings.API_AUTH_FAILURE_RATE = "3/min"
    for _ in range(10):
        assert api.get("/api/v1/health").status_code == 200
        # No key is no refused key: 401 each time, never counted, never 429.
        assert_error(client.get("/api/v1/health"), 401, "not_authenticated")

    assert [response.status_code for response in refuse(client, 4)] == [401, 401, 401, 429]
    assert_error(client.get("/api/v1/health"), 401, "not_authenticated")


def test_a_revoked_key_is_a_refusal_like_a_wrong_one(api, service_key, settings, frozen):
    settings.API_AUTH_FAILURE_RATE = "2/min"
    service_key_revoke(service_key[0])

    assert [api.get("/api/v1/health").status_code for _ in range(3)] == [401, 401, 429]


def test_each_address_is_counted_alone(client, settings, frozen):
    settings.API_AUTH_FAILURE_RATE = "2/min"
    first, second = {"REMOTE_ADDR": "198.51.100.7"}, {"REMOTE_ADDR": "198.51.100.8"}

    assert [r.status_code for r in refuse(client, 3, **first)] == [401, 401, 429]
    assert [r.status_code for r in refuse(client, 3, **second)] == [401, 401, 429]
    assert refuse(client, 1, REMOTE_ADDR="2001:db8::1")[0].status_code == 401


def test_the_count_lives_in_the_shared_cache_under_a_digest_of_the_address(client, settings, frozen, monkeypatch):
    from django.core.cache import cache

    settings.API_AUTH_FAILURE_RATE = "2/min"
    keys = []
    real_add = cache.add

    def add(key, *args, **kwargs):
        keys.append(key)
        return real_add(key, *args, **kwargs)

    monkeypatch.setattr(cache, "add", add)
    assert [r.status_code for r in refuse(client, 3, REMOTE_ADDR="198.51.100.7")] == [401, 401, 429]

    digest = hashlib.sha256(b"198.51.100.7").hexdigest()[:32]
    assert keys == [f"api:refused-keys:{digest}:{int(frozen // 60)}"]
    # The count is the cache's, not the process's: gone with it.
    cache.clear()
    assert refuse(client, 1, REMOTE_ADDR="198.51.100.7")[0].status_code == 401


def configure_from_env(settings, monkeypatch, **env):
    """The client-address settings backoffice/settings.py makes of these variables, as the sign-in tests do."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    made = runpy.run_path(str(REPO / "backoffice" / "settings.py"))
    for name in ("AXES_IPWARE_META_PRECEDENCE_ORDER", "AXES_IPWARE_PROXY_COUNT", "IPWARE_STRICT"):
        setattr(settings, name, made[name])


def test_a_forwarded_for_header_is_not_trusted_by_default(client, settings, frozen):
    settings.API_AUTH_FAILURE_RATE = "2/min"

    answers = [refuse(client, 1, HTTP_X_FORWARDED_FOR=f"203.0.113.{n}")[0].status_code for n in range(3)]

    assert answers == [401, 401, 429]


def test_behind_a_proxy_the_address_is_the_one_login_ip_header_names(
    client, service_key, settings, monkeypatch, frozen
):
    configure_from_env(settings, monkeypatch, LOGIN_IP_HEADER="HTTP_X_FORWARDED_FOR", LOGIN_PROXY_COUNT="1")
    settings.API_AUTH_FAILURE_RATE = "2/min"

    def through_proxy(client_address, spoof):
        return {"REMOTE_ADDR": "10.0.0.2", "HTTP_X_FORWARDED_FOR": f"{spoof}, {client_address}"}

    # The attacker writes a new address each time; only what the proxy appended counts.
    answers = [refuse(client, 1, **through_proxy("198.51.100.7", f"203.0.113.{n}"))[0].status_code for n in range(3)]
    assert answers == [401, 401, 429]
    # Someone else behind the same proxy is another address.
    assert refuse(client, 1, **through_proxy("198.51.100.8", "203.0.113.1"))[0].status_code == 401
    # A valid key from the throttled address passes.
    valid = client.get("/api/v1/health", HTTP_AUTHORIZATION=f"Bearer {service_key[1]}",
                       **through_proxy("198.51.100.7", "203.0.113.9"))
    assert valid.status_code == 200


def test_while_the_cache_is_dead_a_refusal_is_a_401_with_a_warning(client, settings, killable_cache, caplog):
    settings.API_AUTH_FAILURE_RATE = "1/min"
    killable_cache.kill()

    with caplog.at_level(logging.WARNING):
        answers = refuse(client, 3)

    for response in answers:
        assert_error(response, 401, "invalid_key")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name == "connectors.cache"]
    assert len(warnings) == 3 and all("the count of refused service keys" in line for line in warnings), warnings


@postgres_only
def test_refusals_on_every_worker_and_host_add_to_one_count(transactional_db, standin, tmp_path):
    """Two hosts of two gunicorn workers each, one database cache: the count is theirs together."""
    _, secret = service_key_create(name="workflow-engine", scopes=["tokens:read"])
    # A day's window: no window ends while the test runs.
    env = {**child_env(standin), "API_AUTH_FAILURE_RATE": "8/d"}
    logs = [tmp_path / "access-a.log", tmp_path / "access-b.log"]

    def serving(name, access_log):
        return gunicorn_serving(
            env, workers=2, log_path=tmp_path / f"gunicorn-{name}.log",
            extra_args=["--access-logfile", str(access_log), "--access-logformat", "%(p)s %(s)s"],
        )

    with serving("a", logs[0]) as host_a, serving("b", logs[1]) as host_b:
        def call(base, authorization):
            # A new connection each time, so that every worker takes its share.
            return requests.get(f"{base}/api/v1/health", headers={"Authorization": authorization,
                                                                  "Connection": "close"}, timeout=10)

        answers = [call(host, WRONG).status_code for host in (host_a, host_b) * 4]
        assert answers == [401] * 8
        assert [call(host_a, WRONG).status_code, call(host_b, WRONG).status_code] == [429, 429]
        assert call(host_a, WRONG).headers["Retry-After"].isdigit()
        assert call(host_a, f"Bearer {secret}").status_code == 200
        assert call(host_b, f"Bearer {secret}").status_code == 200

    # The refusals were answered by several processes (both hosts' at least), yet counted as one.
    refused_by = {line.split()[0] for log in logs for line in Path(log).read_text().splitlines() if line.endswith("401")}
    assert len(refused_by) >= 2, refused_by
