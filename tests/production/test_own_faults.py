"""Our own cache and database failing while the provider's answer is on its way, through gunicorn.

Two workers on PostgreSQL; the stand-in carries out a refresh or a code
exchange at once and holds its answer back three seconds, while the test
kills the Redis of its own that serves as the cache, or cuts the TCP proxy
every database connection goes through (the database cache's included).
Once the provider has answered, nothing of ours may drop the answer, and
nothing may stay live at the provider that is not stored here.
"""

import logging
from io import StringIO
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from django.core.management import call_command
from django.db import connection

from api.keys import service_key_create
from connectors.models import ConnectedAccount, PendingRevocation
from tests.faults import RedisServer, TcpProxy, at
from tests.helpers import SignedIn, child_env, gunicorn_serving, postgres_only, seed_account

pytestmark = postgres_only

# The stand-in answers this late; the faults come and go before it does.
LATE = 3.0


@pytest.fixture
def database_proxy():
    db = connection.settings_dict
    with TcpProxy(db["HOST"] or "127.0.0.1", int(db["PORT"] or 5432)) as proxy:
        yield proxy


def serving(standin, tmp_path, *, proxy=None, cache_url=None):
    env = child_env(standin)
    if proxy is not None:
        parts = urlsplit(env["DATABASE_URL"])
        env["DATABASE_URL"] = parts._replace(netloc=f"{parts.netloc.rsplit('@', 1)[0]}@127.0.0.1:{proxy.port}").geturl()
    if cache_url is not None:
        env["CACHE_URL"] = cache_url
    return gunicorn_serving(env, workers=2, log_path=tmp_path / "gunicorn.log")


def token_call(base, account, key):
    return requests.post(f"{base}/api/v1/accounts/{account.pk}/token",
                         headers={"Authorization": f"Bearer {key}"}, timeout=30)


def assert_rotated_and_kept(standin, account, answer):
    assert answer.status_code == 200, answer.text
    stored = ConnectedAccount.objects.get(pk=account.pk)
    assert stored.status == ConnectedAccount.Status.ACTIVE
    assert answer.json()["access_token"] == stored.access_token != account.access_token
    assert standin.refresh_token_valid(stored.refresh_token)
    # One refresh in all: the refresh token the provider had retired was never sent again.
    assert standin.count("token.refresh_token") == 1


def test_a_refresh_survives_the_cache_dying_before_its_answer(transactional_db, standin, alice, tmp_path):
    account = seed_account(standin, alice, expires_in=60)
    _, key = service_key_create(name="workflow-engine", scopes=["tokens:read"])
    with RedisServer() as cache, serving(standin, tmp_path, cache_url=cache.url()) as base:
        standin.delay_answer_next("token.refresh_token", seconds=LATE)
        faults = [at(1.0, cache.kill), at(LATE + 0.5, cache.restart)]
        answer = token_call(base, account, key)
        for fault in faults:
            fault.join()
        again = token_call(base, account, key)

    assert_rotated_and_kept(standin, account, answer)
    assert again.status_code == 200 and again.json()["access_token"] == answer.json()["access_token"]
    log = (tmp_path / "gunicorn.log").read_text()
    assert "after the provider's answer was skipped: the shared cache failed" in log


def test_a_refresh_survives_the_database_cut_before_its_answer(
    transactional_db, standin, alice, tmp_path, database_proxy
):
    account = seed_account(standin, alice, expires_in=60)
    _, key = service_key_create(name="workflow-engine", scopes=["tokens:read"])
    with serving(standin, tmp_path, proxy=database_proxy) as base:
        standin.delay_answer_next("token.refresh_token", seconds=LATE)
        faults = [at(1.0, database_proxy.cut), at(2.0, database_proxy.restore)]
        answer = token_call(base, account, key)
        for fault in faults:
            fault.join()

    assert_rotated_and_kept(standin, account, answer)
    log = (tmp_path / "gunicorn.log").read_text()
    assert "storing the refreshed tokens of account" in log and "LOST" not in log


def test_with_the_cache_dead_a_token_call_is_ours_to_fail_and_sends_nothing(
    transactional_db, standin, alice, tmp_path
):
    account = seed_account(standin, alice, expires_in=60)
    _, key = service_key_create(name="workflow-engine", scopes=["tokens:read"])
    with RedisServer() as cache, serving(standin, tmp_path, cache_url=cache.url()) as base:
        cache.kill()
        answer = token_call(base, account, key)

    assert answer.status_code == 503, answer.text
    assert answer.json()["code"] == "service_unavailable"
    assert int(answer.headers["Retry-After"]) > 0
    assert standin.count("token") == 0
    assert ConnectedAccount.objects.get(pk=account.pk).refresh_token == account.refresh_token


def live_grants(standin):
    return [grant for grant in standin.grants if standin.access_token_valid(grant.access_token)]


def test_a_code_exchanged_while_the_cache_dies_is_stored_or_revoked(transactional_db, standin, alice, tmp_path):
    with RedisServer() as cache, serving(standin, tmp_path, cache_url=cache.url()) as base:
        person = SignedIn(base, "alice", "pw-alice-123")
        standin.delay_answer_next("token.authorization_code", seconds=LATE)
        faults = [at(1.0, cache.kill), at(LATE + 0.5, cache.restart)]
        answer = person.connect(standin)
        for fault in faults:
            fault.join()

    assert answer.status_code in (302, 503), answer.text
    assert len(live_grants(standin)) == ConnectedAccount.objects.count()
    assert "LEAKED" not in (tmp_path / "gunicorn.log").read_text()


def test_a_code_exchanged_across_a_database_cut_is_stored_or_revoked(
    transactional_db, standin, alice, tmp_path, database_proxy
):
    with serving(standin, tmp_path, proxy=database_proxy) as base:
        person = SignedIn(base, "alice", "pw-alice-123")
        standin.delay_answer_next("token.authorization_code", seconds=LATE)
        faults = [at(1.0, database_proxy.cut), at(2.0, database_proxy.restore)]
        answer = person.connect(standin)
        for fault in faults:
            fault.join()

    assert answer.status_code in (302, 503), answer.text
    assert len(live_grants(standin)) == ConnectedAccount.objects.count()


def test_a_grant_neither_stored_nor_revoked_is_leaked_then_revoked_by_the_next_sweep(
    transactional_db, standin, alice, tmp_path, database_proxy, caplog
):
    with serving(standin, tmp_path, proxy=database_proxy) as base:
        person = SignedIn(base, "alice", "pw-alice-123")
        standin.delay_answer_next("token.authorization_code", seconds=LATE)
        # The database is gone when the answer comes, and the provider refuses the revocation.
        standin.fail_next("revoke", 503)
        faults = [at(1.0, database_proxy.cut), at(LATE + 1.0, database_proxy.restore)]
        answer = person.connect(standin)
        for fault in faults:
            fault.join()

    assert answer.status_code == 503, answer.text
    assert ConnectedAccount.objects.count() == 0
    log = Path(tmp_path / "gunicorn.log").read_text()
    assert "LEAKED:" in log and "kept to revoke again" in log
    [grant] = live_grants(standin)
    assert grant.access_token not in log and grant.refresh_token not in log
    assert PendingRevocation.objects.count() == 1

    caplog.set_level(logging.INFO, logger="connectors")
    out = StringIO()
    call_command("refresh_tokens", stdout=out)

    assert live_grants(standin) == []
    assert PendingRevocation.objects.count() == 0
    assert "1 revoked" in out.getvalue()
