"""Our own cache dying around a call to the provider, as it happens: a real Redis of the test's own,
killed while the stand-in holds its answer back (tests/faults.py). On both databases; the same
through gunicorn, and the database cut, are in tests/production/test_own_faults.py."""

import logging
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from connectors.exceptions import ServiceUnavailable
from connectors.models import ConnectedAccount
from connectors.tokens import fresh_access_token
from tests.faults import at
from tests.helpers import decide, finish, seed_account, start


def test_a_refresh_answered_while_the_cache_is_dead_is_stored(standin, alice, killable_cache, caplog):
    account = seed_account(standin, alice, expires_in=60)
    standin.delay_answer_next("token.refresh_token", seconds=1.0)
    kill = at(0.3, killable_cache.kill)
    caplog.set_level(logging.WARNING, logger="connectors")

    token = fresh_access_token(account)
    kill.join()

    stored = ConnectedAccount.objects.get(pk=account.pk)
    assert stored.status == ConnectedAccount.Status.ACTIVE and stored.last_error == ""
    assert token == stored.access_token != account.refresh_token
    assert standin.access_token_valid(token) and standin.refresh_token_valid(stored.refresh_token)
    # One refresh: the dead refresh token was never sent again.
    assert standin.count("token.refresh_token") == 1
    assert "after the provider's answer was skipped: the shared cache failed (ConnectionError)" in caplog.text
    for secret in (token, stored.refresh_token):
        assert secret not in caplog.text


def test_with_the_cache_dead_before_a_refresh_nothing_is_sent_and_nothing_changes(standin, alice, killable_cache):
    account = seed_account(standin, alice, expires_in=60)
    killable_cache.kill()

    with pytest.raises(ServiceUnavailable, match="cannot reach its shared cache"):
        fresh_access_token(account)

    assert standin.count("token") == 0
    stored = ConnectedAccount.objects.get(pk=account.pk)
    assert stored.status == ConnectedAccount.Status.ACTIVE and stored.last_error == ""
    assert stored.refresh_token == account.refresh_token


def test_the_api_says_the_dead_cache_is_ours_not_the_providers(api, standin, alice, killable_cache):
    account = seed_account(standin, alice, expires_in=60)
    killable_cache.kill()

    response = api.post(f"/api/v1/accounts/{account.pk}/token")

    assert response.status_code == 503, response.content
    assert response.json()["code"] == "service_unavailable"
    assert int(response["Retry-After"]) > 0
    assert standin.count("token") == 0


def test_the_cache_back_after_a_blip_serves_the_next_call(api, standin, alice, killable_cache):
    account = seed_account(standin, alice, expires_in=60)
    killable_cache.kill()
    assert api.post(f"/api/v1/accounts/{account.pk}/token").status_code == 503
    killable_cache.restart()

    response = api.post(f"/api/v1/accounts/{account.pk}/token")

    assert response.status_code == 200, response.content
    assert standin.access_token_valid(response.json()["access_token"])


def test_a_code_exchanged_while_the_cache_dies_leaves_no_live_grant(client_alice, standin, killable_cache, caplog):
    callback = decide(standin, start(client_alice))
    standin.delay_answer_next("token.authorization_code", seconds=1.0)
    kill = at(0.3, killable_cache.kill)

    response = finish(client_alice, callback)
    kill.join()

    # The profile could not be asked for without the pace: our page, and the new grant revoked.
    assert response.status_code == 503
    assert "cannot reach its shared cache" in response.content.decode()
    assert int(response["Retry-After"]) > 0
    live = [grant for grant in standin.grants if standin.access_token_valid(grant.access_token)]
    assert len(live) == ConnectedAccount.objects.count() == 0
    assert "LEAKED" not in caplog.text


def test_the_accounts_page_renders_while_the_cache_is_dead(client_alice, standin, alice, killable_cache):
    seed_account(standin, alice, expires_in=3600)
    killable_cache.kill()

    response = client_alice.get("/accounts/")

    assert response.status_code == 200


def test_commands_stop_non_zero_naming_the_cache_and_send_nothing(
    transactional_db, standin, alice, killable_cache
):
    """transactional_db: on PostgreSQL the sweep's worker threads read the seeded account."""
    seed_account(standin, alice, expires_in=60)
    killable_cache.kill()

    with pytest.raises(CommandError, match=r"shared cache.*CACHE_URL"):
        call_command("refresh_tokens", "--within", "1d", stdout=StringIO())
    with pytest.raises(CommandError, match="shared cache"):
        call_command("check_connector", "appmixer:discord", stdout=StringIO())

    assert standin.count("token.refresh_token") == 0
    assert not ConnectedAccount.objects.exclude(status=ConnectedAccount.Status.ACTIVE).exists()
