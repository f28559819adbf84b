"""The app's own credentials refused by the provider: the connector is at fault, never an account."""

import logging
from io import StringIO

import pytest
from django.core import mail
from django.core.management import CommandError, call_command

from connectors.config import config_update, credentials_refused_note
from connectors.exceptions import CredentialsRefused
from connectors.models import ConnectedAccount, ConnectorConfig
from connectors.registry import registry
from connectors.tokens import account_check, fresh_access_token
from tests.conftest import SERVICE_ID
from tests.helpers import config_admin_url, seed_account, seed_many

WRONG_SECRET = "wrong-Client-Secret-Value-0123456789ABCD"


@pytest.fixture
def alice_mail(alice):
    alice.email = "alice@example.com"
    alice.save()
    return alice


def refuse_the_secret():
    config_update(service_id=SERVICE_ID, values={"clientSecret": WRONG_SECRET})


def flag():
    return ConnectorConfig.objects.values_list("credentials_refused_at", "credentials_refused").get(
        service_id=SERVICE_ID
    )


def test_a_sweep_over_a_refused_secret_marks_no_one_calls_once_and_says_so_once(
    transactional_db, standin, alice_mail, caplog
):
    seed_many(standin, alice_mail, 30, expires_in=60)
    refuse_the_secret()
    caplog.set_level(logging.WARNING, logger="connectors")
    out = StringIO()

    with pytest.raises(CommandError, match="Discord refused the client credentials: no account was touched"):
        call_command("refresh_tokens", "--within", "1d", stdout=out)

    assert not ConnectedAccount.objects.exclude(status=ConnectedAccount.Status.ACTIVE).exists()
    assert not mail.outbox
    assert standin.count("token.refresh_token") == 1
    refused_at, words = flag()
    assert refused_at is not None and "invalid_client" in words
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert [record.name for record in errors] == ["connectors.sweep"]
    assert WRONG_SECRET not in caplog.text


def test_a_grant_check_whose_refresh_meets_a_refused_secret_marks_nothing(standin, alice_mail):
    account = seed_account(standin, alice_mail, expires_in=60)
    refuse_the_secret()

    with pytest.raises(CredentialsRefused):
        account_check(account)

    account.refresh_from_db()
    assert account.status == ConnectedAccount.Status.ACTIVE and not mail.outbox
    assert flag()[0] is not None


def test_the_api_says_the_refusal_is_ours_and_keeps_the_account(api, standin, alice):
    account = seed_account(standin, alice, expires_in=60)
    refuse_the_secret()

    response = api.post(f"/api/v1/accounts/{account.pk}/token")

    assert response.status_code == 503 and response.json()["code"] == "service_unavailable"
    assert "refused the client credentials" in response.json()["message"]
    assert ConnectedAccount.objects.get(pk=account.pk).status == ConnectedAccount.Status.ACTIVE


def test_an_accepted_refresh_clears_the_flag(standin, alice):
    account = seed_account(standin, alice, expires_in=60)
    credentials_refused_note(registry.get(SERVICE_ID), "Discord refused the client credentials (earlier).")
    assert flag()[0] is not None

    fresh_access_token(account)

    assert flag() == (None, "")


def test_check_connector_shows_the_refusal_and_fails(standin, alice):
    account = seed_account(standin, alice, expires_in=60)
    refuse_the_secret()
    with pytest.raises(CredentialsRefused):
        fresh_access_token(account)
    out = StringIO()

    with pytest.raises(CommandError):
        call_command("check_connector", SERVICE_ID, stdout=out)

    assert "✗ Discord refused the client credentials at" in out.getvalue()
    assert WRONG_SECRET not in out.getvalue()


def test_the_admin_shows_the_refusal_and_a_green_test_clears_it(admin_client, standin):
    standin.app.redirect_uris = [registry.get(SERVICE_ID).redirect_url()]
    credentials_refused_note(registry.get(SERVICE_ID), "Discord refused the client credentials (HTTP 401).")

    listed = admin_client.get("/admin/connectors/connectorconfig/").content.decode()
    change = admin_client.get(config_admin_url("change")).content.decode()

    assert "credentials refused" in listed
    assert "refused these client credentials" in change and "No account was marked" in change
    tested = admin_client.post(config_admin_url("test_credentials"))
    assert tested.status_code == 200
    assert flag() == (None, "")
    assert "refused these client credentials" not in admin_client.get(config_admin_url("change")).content.decode()
