"""What a newcomer meets first: signing up and out, a connector not set up yet,
a Disconnect address opened directly, a consent sent again after it succeeded."""

import logging

import pytest
from django.contrib.auth import get_user_model

from connectors.config import config_update
from connectors.models import ConnectedAccount
from tests.conftest import SERVICE_ID
from tests.helpers import assert_strict_policies, decide, finish, start

NEW_USER = {"username": "newt", "password1": "a-long-pass-phrase-42", "password2": "a-long-pass-phrase-42"}


# Sign-up (SIGNUP_ENABLED)


def test_sign_up_is_off_by_default_and_the_login_page_does_not_offer_it(client, db):
    assert client.get("/accounts/signup/").status_code == 404
    assert client.post("/accounts/signup/", NEW_USER).status_code == 404
    assert not get_user_model().objects.filter(username="newt").exists()
    assert "/accounts/signup/" not in client.get("/accounts/login/").content.decode()


@pytest.fixture
def signup_on(settings, db):
    settings.SIGNUP_ENABLED = True


def test_signing_up_logs_the_new_user_in_and_shows_the_accounts_page(client, signup_on):
    assert 'href="/accounts/signup/"' in client.get("/accounts/login/").content.decode()
    form = client.get("/accounts/signup/")
    assert form.status_code == 200
    assert_strict_policies(form)

    response = client.post("/accounts/signup/", NEW_USER, follow=True)

    assert response.redirect_chain == [("/accounts/", 302)]
    user = get_user_model().objects.get(username="newt")
    assert response.context["user"] == user
    assert not user.is_staff
    assert "Welcome, newt" in response.content.decode()


def test_a_refused_sign_up_shows_djangos_reasons_and_creates_nobody(client, signup_on, alice):
    mismatch = client.post("/accounts/signup/", {**NEW_USER, "password2": "something-else-42"})
    taken = client.post("/accounts/signup/", {**NEW_USER, "username": "alice"})
    assert mismatch.status_code == taken.status_code == 200
    assert "password fields didn’t match" in mismatch.content.decode()
    assert "already exists" in taken.content.decode()
    assert list(get_user_model().objects.values_list("username", flat=True)) == ["alice"]


def test_a_signed_up_user_signs_in_again_under_login_throttling(client, signup_on, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    client.post("/accounts/signup/", NEW_USER)
    client.post("/accounts/logout/")
    for attempt in range(1, settings.AXES_FAILURE_LIMIT + 1):
        wrong = client.post("/accounts/login/", {"username": "newt", "password": f"wrong-{attempt}"})
    assert wrong.status_code == 429, "the lock no longer holds"
    other = client.post("/accounts/login/", {"username": "newt", "password": NEW_USER["password1"]},
                        REMOTE_ADDR="198.51.100.9")
    assert other.status_code == 302 and other["Location"] == "/accounts/"


def test_a_signed_in_user_is_sent_to_the_accounts_page(client_alice, signup_on):
    response = client_alice.get("/accounts/signup/")
    assert response.status_code == 302 and response["Location"] == "/accounts/"


# Logging out


def test_the_login_page_says_you_are_signed_out(client_alice):
    response = client_alice.post("/accounts/logout/", follow=True)
    assert response.redirect_chain == [("/accounts/login/", 302)]
    assert "You are signed out." in response.content.decode()
    assert client_alice.get("/accounts/").status_code == 302


# A connector not set up yet


def test_connect_is_not_offered_while_nothing_is_configured(client_alice):
    page = client_alice.get("/accounts/").content.decode()
    assert "Connect account" not in page and "/auth/discord/connect" not in page
    assert "the operator of this site has not set it up" in page


def test_connect_is_not_offered_while_a_flow_key_is_missing(client_alice, configured):
    config_update(service_id=SERVICE_ID, clear=["clientSecret"])
    assert "Connect account" not in client_alice.get("/accounts/").content.decode()


def test_connect_is_offered_once_configured_without_decrypting_anything(client_alice, wrong_key):
    """Under another key nothing decrypts: the page still answers, so it read none."""
    response = client_alice.get("/accounts/")
    assert response.status_code == 200
    assert "Connect account" in response.content.decode()


def test_the_not_configured_page_speaks_to_the_user_and_the_log_to_the_operator(client_alice, caplog):
    with caplog.at_level(logging.WARNING, logger="connectors.flow"):
        response = client_alice.get("/auth/discord/connect")
    page = response.content.decode()
    assert response.status_code == 503
    assert "the operator of this site has not finished setting it up" in page
    assert "clientId" not in page and "clientSecret" not in page
    assert "missing clientId, clientSecret" in caplog.text


# A wrong method


def test_opening_a_disconnect_address_gets_our_405_page(client_alice):
    response = client_alice.get("/accounts/1/disconnect")
    assert response.status_code == 405
    assert response["Allow"] == "POST"
    page = response.content.decode()
    assert "This address is not a page" in page and 'href="/accounts/"' in page
    assert_strict_policies(response)


# The consent sent again after it succeeded


def test_a_used_link_after_success_says_the_account_is_connected(client_alice, standin):
    callback = decide(standin, start(client_alice))
    assert finish(client_alice, callback).status_code == 302
    account = ConnectedAccount.objects.get()
    grants = len(standin.grants)

    again = finish(client_alice, callback)

    page = again.content.decode()
    assert again.status_code == 400
    assert f"Your Discord account <strong>{account.display_name}</strong> is connected" in page
    assert 'href="/accounts/"' in page
    assert ConnectedAccount.objects.get().access_token == account.access_token
    assert len(standin.grants) == grants and standin.count("token.authorization_code") == 1


def test_a_used_link_without_an_account_offers_to_start_again(client_alice, standin):
    response = client_alice.get("/auth/discord/callback", {"state": "unknown", "code": "x"})
    assert response.status_code == 400
    assert "is connected" not in response.content.decode()
    assert "/auth/discord/connect" in response.content.decode()
