"""What a visitor can make the server keep is bounded; errors and events read well."""

import logging
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.test import Client

from connectors.flow import MAX_PENDING
from connectors.models import ConnectedAccount

from tests.helpers import decide, finish, start


@pytest.fixture
def eve(client, db):
    client.force_login(get_user_model().objects.create_user("eve", password="pw-eve-123"))
    return client


def test_a_session_keeps_only_the_newest_pending_flows(eve, standin):
    urls = [start(eve) for _ in range(MAX_PENDING + 3)]
    oldest, newest = urls[0], urls[-1]
    assert finish(eve, decide(standin, oldest)).status_code == 400
    assert finish(eve, decide(standin, newest)).status_code == 302


def test_a_flood_of_connect_requests_does_not_grow_the_database(eve, standin):
    for _ in range(10):
        start(eve)
    size_after_10 = sum(len(s.session_data) for s in Session.objects.all())
    for _ in range(200):
        start(eve)
    assert Session.objects.count() == 1
    assert sum(len(s.session_data) for s in Session.objects.all()) <= size_after_10 + 64


def test_anonymous_connect_requests_store_nothing(client, standin):
    for _ in range(20):
        client.get("/auth/discord/connect")
    assert Session.objects.count() == 0


def test_oversized_callback_parameters_are_not_used(eve, standin):
    url = start(eve)
    state = parse_qs(urlsplit(url).query)["state"][0]
    response = eve.get("/auth/discord/callback", {"state": state, "code": "x" * 5000})
    assert response.status_code == 400
    assert "no code was sent" in response.content.decode()
    assert standin.count("token") == 0
    assert not ConnectedAccount.objects.exists()


def test_not_found_is_the_projects_own_page(client, db):
    response = client.get("/no/such/page")
    assert response.status_code == 404
    html = response.content.decode()
    assert "Page not found" in html and "Backoffice" in html
    assert "urlpatterns" not in html and "Django" not in html


def test_a_csrf_failure_is_the_projects_own_page(db):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(get_user_model().objects.create_user("fay", password="pw-fay-123"))
    response = browser.post("/accounts/logout/")
    assert response.status_code == 403
    html = response.content.decode()
    assert "This form has expired" in html
    assert "CSRF" not in html


def test_each_oauth_event_is_one_log_line_naming_user_and_discord_id(eve, standin, caplog):
    caplog.set_level(logging.INFO, logger="connectors")
    finish(eve, decide(standin, start(eve), action="cancel"))
    finish(eve, decide(standin, start(eve)))
    account = ConnectedAccount.objects.get()
    eve.post(f"/accounts/{account.pk}/disconnect")
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("connectors")]
    uid, user = account.uid, account.user_id
    assert any(line.startswith("flow started") and f"user {user}" in line for line in lines)
    assert any(line.startswith("flow denied") and f"user {user}" in line for line in lines)
    assert any(line.startswith("connected") and uid in line and f"user {user}" in line for line in lines)
    assert any(line.startswith("disconnected") and uid in line and f"user {user}" in line for line in lines)
    for line in lines:
        assert account.access_token not in line and account.refresh_token not in line
