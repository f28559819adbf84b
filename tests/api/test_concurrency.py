"""Many services asking for one expiring token at once, through several gunicorn workers: one refresh."""

import threading

import requests

from api.keys import service_key_create
from connectors.models import ConnectedAccount
from tests.helpers import child_env, gunicorn_serving, postgres_only, seed_account

CALLERS = 20


@postgres_only
def test_twenty_callers_on_several_workers_cause_one_refresh_and_all_get_its_token(
    transactional_db, standin, alice, tmp_path
):
    account = seed_account(standin, alice, expires_in=60)
    _, secret = service_key_create(name="workflow-engine", scopes=["tokens:read"])
    # The refresh takes a while, so that the other callers arrive while it holds the row lock.
    standin.delay_next("token.refresh_token", seconds=0.5)
    answers, barrier = [], threading.Barrier(CALLERS)

    with gunicorn_serving(child_env(standin), workers=4, log_path=tmp_path / "gunicorn.log") as base:
        def call():
            session = requests.Session()
            barrier.wait(timeout=10)
            answers.append(session.post(
                f"{base}/api/v1/accounts/{account.pk}/token",
                headers={"Authorization": f"Bearer {secret}"}, timeout=30,
            ))

        threads = [threading.Thread(target=call) for _ in range(CALLERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)

    assert [answer.status_code for answer in answers] == [200] * CALLERS, [a.text for a in answers]
    tokens = {answer.json()["access_token"] for answer in answers}
    assert len(tokens) == 1 and account.access_token not in tokens
    assert standin.count("token.refresh_token") == 1
    [token] = tokens
    assert standin.access_token_valid(token)
    assert ConnectedAccount.objects.get(pk=account.pk).access_token == token
