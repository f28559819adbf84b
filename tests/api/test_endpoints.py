"""What a service calling the API sees: accounts without tokens, fresh tokens, JSON errors, its pace."""

import logging
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from api.keys import service_key_create
from connectors.breaker import Breaker
from connectors.models import AccountServer, ConnectedAccount
from tests.conftest import SERVICE_ID
from tests.helpers import revoke_at_standin, seed_account


@pytest.fixture
def account(standin, alice):
    account = seed_account(standin, alice, expires_in=86400, scopes="identify guilds")
    AccountServer.objects.create(
        account=account, server_id="290926798626357999", name="Fay's guild", permissions="3072",
        added_at=timezone.now(),
    )
    return account


def token_url(account):
    return f"/api/v1/accounts/{account.pk}/token"


def assert_error(response, status, code):
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"code", "message"} and body["code"] == code and body["message"]
    return body


def test_the_accounts_list_names_each_account_and_its_servers_but_no_token(api, account):
    response = api.get("/api/v1/accounts", {"user": "alice", "service": SERVICE_ID})

    assert response.status_code == 200
    [listed] = response.json()["accounts"]
    assert listed == {
        "id": account.pk,
        "service": SERVICE_ID,
        "uid": account.uid,
        "username": account.username,
        "status": "active",
        "scopes": ["identify", "guilds"],
        "expires_at": listed["expires_at"],
        "servers": [{"id": "290926798626357999", "name": "Fay's guild", "permissions": "3072"}],
    }
    assert listed["expires_at"].startswith(f"{account.expires_at:%Y-%m-%dT%H:%M}")
    assert account.access_token not in response.content.decode()
    assert account.refresh_token not in response.content.decode()


def test_the_accounts_list_filters_by_service_and_refuses_what_it_cannot_answer(api, account, alice):
    assert api.get("/api/v1/accounts", {"user": "alice", "service": "appmixer:slack"}).json() == {"accounts": []}
    assert_error(api.get("/api/v1/accounts", {"user": "nobody"}), 404, "not_found")
    assert_error(api.get("/api/v1/accounts"), 400, "invalid_request")
    body = assert_error(api.get("/api/v1/accounts", {"user": "alice", "service": "appmixer:nope"}), 400, "invalid_request")
    assert "appmixer:nope" in body["message"]


def test_a_valid_token_is_handed_out_with_no_request_to_the_provider_and_one_read_of_the_account(
    api, account, standin
):
    api.get("/api/v1/health")  # the key's last use is written once; this call measures the rest

    with CaptureQueriesContext(connection) as queries:
        response = api.post(token_url(account))

    assert response.status_code == 200
    body = response.json()
    assert body["access_token"] == account.access_token
    assert body["token_type"] == "Bearer" and body["scopes"] == ["identify", "guilds"]
    assert body["expires_at"].startswith(f"{account.expires_at:%Y-%m-%dT%H:%M}")
    assert standin.calls == []
    tables = [query["sql"] for query in queries.captured_queries]
    on_accounts = [sql for sql in tables if ConnectedAccount._meta.db_table in sql]
    assert len(on_accounts) == 1 and on_accounts[0].startswith("SELECT")
    others = [sql for sql in tables if ConnectedAccount._meta.db_table not in sql]
    assert all("api_servicekey" in sql or "backoffice_cache" in sql or sql.startswith(("SAVEPOINT", "RELEASE"))
               for sql in others), others


def test_a_token_near_expiry_is_refreshed_first_and_the_new_one_handed_out(api, standin, alice):
    account = seed_account(standin, alice, expires_in=60)

    response = api.post(token_url(account))

    assert response.status_code == 200
    token = response.json()["access_token"]
    assert token != account.access_token and standin.access_token_valid(token)
    assert standin.count("token.refresh_token") == 1
    assert ConnectedAccount.objects.get(pk=account.pk).access_token == token


def test_an_account_that_needs_reconnecting_gets_409_with_the_reason(api, standin, alice):
    account = seed_account(standin, alice, expires_in=60)
    revoke_at_standin(standin, account.refresh_token)

    body = assert_error(api.post(token_url(account)), 409, "needs_reconnect")

    assert body["message"] == ConnectedAccount.objects.get(pk=account.pk).status_reason
    assert_error(api.post(token_url(account)), 409, "needs_reconnect")
    assert api.get("/api/v1/accounts", {"user": "alice"}).json()["accounts"][0]["status"] == "needs_reconnect"


def test_a_provider_failing_gets_503_with_retry_after(api, standin, alice):
    account = seed_account(standin, alice, expires_in=60)
    standin.fail_next("token.refresh_token", status=502)

    response = api.post(token_url(account))

    body = assert_error(response, 503, "provider_unavailable")
    assert "Discord" in body["message"]
    assert int(response["Retry-After"]) > 0
    assert ConnectedAccount.objects.get(pk=account.pk).access_token == account.access_token


def test_while_refreshes_are_paused_the_wait_left_is_the_retry_after(api, standin, alice, settings):
    account = seed_account(standin, alice, expires_in=60)
    breaker = Breaker(SERVICE_ID)
    for _ in range(settings.REFRESH_BREAKER_THRESHOLD):
        breaker.failed()

    response = api.post(token_url(account))

    assert_error(response, 503, "provider_unavailable")
    assert 0 < int(response["Retry-After"]) <= settings.REFRESH_BREAKER_COOLDOWN
    assert standin.count("token") == 0


def test_an_unknown_account_is_a_json_404(api):
    assert_error(api.post("/api/v1/accounts/987654/token"), 404, "not_found")


def test_each_token_handed_out_is_logged_with_the_key_and_the_account_never_the_token(
    api, account, caplog
):
    with caplog.at_level(logging.INFO, logger="api"):
        token = api.post(token_url(account)).json()["access_token"]

    [line] = [record.getMessage() for record in caplog.records if record.name == "api.tokens"]
    assert "'workflow-engine'" in line and f"account {account.pk} " in line
    assert str(timezone.now().year) in line
    assert all(token not in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer bsk_not-a-key-at-all-000000000000000000000", "Bearer", "Basic dXNlcjpwYXNz", "Bearer a b"],
)
def test_a_missing_or_wrong_key_gets_401(client, account, authorization):
    headers = {"HTTP_AUTHORIZATION": authorization} if authorization else {}

    for response in (client.get("/api/v1/health", **headers), client.post(token_url(account), **headers)):
        body = assert_error(response, 401, "not_authenticated" if authorization is None else "invalid_key")
        assert response["WWW-Authenticate"].startswith("Bearer")
        presented = (authorization or "").partition(" ")[2]
        assert not presented or presented not in body["message"]


def test_a_logged_in_browser_without_a_key_gets_401(client_alice, account):
    assert_error(client_alice.post(token_url(account)), 401, "not_authenticated")


def test_a_revoked_key_gets_401(api, service_key, account):
    from api.keys import service_key_revoke

    assert api.get("/api/v1/health").status_code == 200
    service_key_revoke(service_key[0])

    assert_error(api.get("/api/v1/health"), 401, "invalid_key")
    assert_error(api.post(token_url(account)), 401, "invalid_key")


def test_a_key_without_the_scope_gets_403(client, account):
    _, secret = service_key_create(name="no-scope", scopes=[])
    headers = {"HTTP_AUTHORIZATION": f"Bearer {secret}"}

    for response in (client.get("/api/v1/health", **headers), client.post(token_url(account), **headers),
                     client.get("/api/v1/accounts", {"user": "alice"}, **headers)):
        body = assert_error(response, 403, "missing_scope")
        assert "tokens:read" in body["message"]


def test_each_key_is_throttled_alone_with_retry_after(api, client, settings, account):
    settings.API_THROTTLE_RATE = "3/min"
    for _ in range(3):
        assert api.get("/api/v1/health").status_code == 200

    response = api.post(token_url(account))

    assert_error(response, 429, "throttled")
    assert 1 <= int(response["Retry-After"]) <= 61
    _, other = service_key_create(name="bot-worker", scopes=["tokens:read"])
    assert client.get("/api/v1/health", HTTP_AUTHORIZATION=f"Bearer {other}").status_code == 200


@pytest.mark.parametrize("path", ["/api/v1/health/", "/api/v1/accounts/", "/api/v1/nothing", "/api/v2/health", "/api"])
def test_any_other_address_under_api_is_a_json_404_never_a_redirect(api, path):
    assert_error(api.get(path), 404, "not_found")


def test_a_wrong_method_is_a_json_405(api, account):
    for response in (api.delete("/api/v1/health"), api.get(token_url(account)), api.post("/api/v1/accounts")):
        assert_error(response, 405, "method_not_allowed")
        assert response["Allow"]


def test_an_unexpected_failure_is_a_json_500_that_tells_nothing(api, account, monkeypatch):
    api.raise_request_exception = False
    monkeypatch.setattr("api.views.fresh_access_token", lambda account: 1 / 0)

    body = assert_error(api.post(token_url(account)), 500, "server_error")

    assert "Division" not in body["message"]


def test_the_api_names_no_provider_but_in_the_schema_s_examples():
    from tests.helpers import REPO

    sources = sorted((REPO / "api").rglob("*.py"))
    named = [
        f"{source.relative_to(REPO)}:{number}"
        for source in sources
        for number, line in enumerate(source.read_text().splitlines(), start=1)
        if re.search(r"discord|slack", line, re.IGNORECASE) and "e.g. appmixer:" not in line
    ]
    assert len(sources) > 10 and not named, named


def test_a_malformed_throttle_rate_stops_start_up_and_says_what_is_wanted():
    from tests.helpers import PRODUCTION, manage

    started = manage("check", **PRODUCTION, API_THROTTLE_RATE="lots")

    assert started.returncode != 0
    assert "API_THROTTLE_RATE='lots' is not a rate such as 600/min" in started.stderr


def test_a_malformed_auth_failure_rate_stops_start_up_and_says_what_is_wanted():
    from tests.helpers import PRODUCTION, manage

    started = manage("check", **PRODUCTION, API_AUTH_FAILURE_RATE="30")

    assert started.returncode != 0
    assert "API_AUTH_FAILURE_RATE='30' is not a rate such as 30/min" in started.stderr


UNKNOWN_PATHS = ["/api/v1/health/", "/api/v1/nope", "/api/v1/accounts/abc/token", "/api/v1/accounts/-1/token", "/api"]


@pytest.mark.parametrize("method", ["get", "post", "put", "patch", "delete", "head", "options"])
def test_any_method_on_any_other_address_under_api_is_a_json_404_with_no_csrf_check(service_key, client_alice, method):
    """The API authenticates by key only: no CSRF check answers 403 there, not even to a signed-in browser."""
    from django.test import Client

    keyed = Client(enforce_csrf_checks=True, HTTP_AUTHORIZATION=f"Bearer {service_key[1]}")
    client_alice.handler.enforce_csrf_checks = True
    for client in (keyed, Client(enforce_csrf_checks=True), client_alice):
        for path in UNKNOWN_PATHS:
            response = getattr(client, method)(path, data="{}", content_type="application/json") if method in (
                "post", "put", "patch") else getattr(client, method)(path)
            assert response.status_code == 404, (method, path, response.status_code)
            assert response["Content-Type"] == "application/json"
            if method != "head":
                assert response.json() == {"code": "not_found", "message": "No such endpoint."}


def test_the_api_s_own_paths_need_no_csrf_token_either(service_key, account):
    from django.test import Client

    keyed = Client(enforce_csrf_checks=True, HTTP_AUTHORIZATION=f"Bearer {service_key[1]}")

    assert keyed.post(token_url(account)).status_code == 200
    assert_error(keyed.delete("/api/v1/health"), 405, "method_not_allowed")
    assert_error(Client(enforce_csrf_checks=True).post(token_url(account)), 401, "not_authenticated")


def test_every_answer_of_the_token_endpoint_is_marked_never_to_be_stored(api, client, account):
    for response in (api.post(token_url(account)), api.post("/api/v1/accounts/987654/token"),
                     client.post(token_url(account)), api.get(token_url(account))):
        assert response["Cache-Control"] == "no-store", response.status_code
    assert api.post(token_url(account)).status_code == 200


def test_an_account_id_beyond_64_bits_is_a_404_not_a_database_error(api):
    for account_id in (2**63 - 1, 2**63, 10**30):
        assert_error(api.post(f"/api/v1/accounts/{account_id}/token"), 404, "not_found")


@pytest.mark.parametrize(
    "query, status",
    [
        ({"user": " alice"}, 404),  # not trimmed: a username the schema allows names nobody
        ({"user": "a" * 150}, 404),
        ({"user": "\x01\x7f"}, 404),
        ({"user": "a" * 151}, 400),
        ({"user": ""}, 400),
        ({"user": "ali\x00ce"}, 400),
        ({"user": "alice", "service": ""}, 400),
        ({"user": "alice", "service": "appmixer:slack"}, 200),
    ],
)
def test_the_accounts_query_refuses_only_what_the_schema_refuses(api, account, query, status):
    """The schema's limits (1 to 150 characters without NUL, a registered service id) and no others."""
    response = api.get("/api/v1/accounts", query)

    if status == 200:
        assert response.status_code == 200 and response.json() == {"accounts": []}
    else:
        assert_error(response, status, {400: "invalid_request", 404: "not_found"}[status])


def test_a_nul_in_the_username_is_named_in_the_400(api):
    body = assert_error(api.get("/api/v1/accounts", {"user": "ali\x00ce"}), 400, "invalid_request")
    assert body["message"] == "user: Null characters are not allowed."


def test_an_unknown_service_id_is_named_in_the_400(api, account):
    body = assert_error(api.get("/api/v1/accounts", {"user": "alice", "service": "appmixer:nope"}), 400, "invalid_request")
    assert body["message"] == "service: No connector has the service id 'appmixer:nope'."


@pytest.mark.parametrize("accept", ["text/html", "application/xml", "text/plain;q=1, image/png", "*/*", ""])
def test_the_api_answers_json_whatever_accept_asks(api, account, accept):
    for response in (api.get("/api/v1/health", HTTP_ACCEPT=accept), api.post(token_url(account), HTTP_ACCEPT=accept),
                     api.get("/api/v1/accounts", {"user": "alice", "format": "xml"}, HTTP_ACCEPT=accept)):
        assert response.status_code == 200, (accept, response.status_code)
        assert response["Content-Type"] == "application/json"
    # The schema keeps its YAML, and its JSON when asked.
    assert api.get("/api/v1/schema", HTTP_ACCEPT=accept).content.startswith(b"openapi: 3")
    assert api.get("/api/v1/schema", {"format": "json"}, HTTP_ACCEPT=accept).json()["openapi"].startswith("3")


def test_a_configuration_no_key_decrypts_is_a_503_with_retry_after(api, account, monkeypatch):
    from connectors.exceptions import EncryptionKeyError

    def unreadable(account):
        raise EncryptionKeyError("no key decrypts it")

    monkeypatch.setattr("api.views.fresh_access_token", unreadable)

    response = api.post(token_url(account))

    assert_error(response, 503, "configuration_unreadable")
    assert response["Retry-After"] == "60"


def test_a_provider_s_other_refusal_is_a_502(api, account, monkeypatch):
    from connectors.exceptions import ProviderError

    def refused(account):
        raise ProviderError("The provider refused the refresh: unsupported_grant_type.")

    monkeypatch.setattr("api.views.fresh_access_token", refused)

    body = assert_error(api.post(token_url(account)), 502, "provider_error")
    assert "unsupported_grant_type" in body["message"]


def test_a_request_django_refuses_before_any_view_is_still_json_under_api(client, settings):
    settings.DEBUG = False

    answer = client.get("/api/v1/health", HTTP_HOST="elsewhere.example")

    assert answer.status_code == 400 and answer["Content-Type"] == "application/json"
    assert answer.json()["code"] == "invalid_request"
