"""The published OpenAPI schema is the API's contract: every answer the API gives, error or not, fits it."""

import json

import pytest
from django.test import RequestFactory
from openapi_core import OpenAPI
from openapi_core.contrib.django import DjangoOpenAPIRequest, DjangoOpenAPIResponse
from openapi_spec_validator import validate

from api.keys import service_key_create
from connectors.exceptions import EncryptionKeyError, ProviderError
from tests.helpers import revoke_at_standin, seed_account

TOKEN = "/api/v1/accounts/{account_id}/token"


@pytest.fixture
def schema(client):
    response = client.get("/api/v1/schema", {"format": "json"})
    assert response.status_code == 200
    document = json.loads(response.content)
    validate(document)
    return document


@pytest.fixture
def check(schema):
    """Validate a test client's response, and the request that got it, against the schema."""
    spec = OpenAPI.from_dict(schema)

    def check(response, *, request_too=True, as_method=None):
        """``as_method``: check the answer to a method the path does not take against the path's
        operation of that method, which declares the 405 (openapi-core finds no operation for the other)."""
        sent = response.wsgi_request
        if as_method is not None:
            sent = RequestFactory().generic(as_method, sent.get_full_path(), HTTP_AUTHORIZATION=sent.META.get("HTTP_AUTHORIZATION", ""))
        request = DjangoOpenAPIRequest(sent)
        if request_too:
            spec.validate_request(request)
        spec.validate_response(request, DjangoOpenAPIResponse(response))
        return response

    return check


def test_the_schema_names_exactly_the_endpoints_and_their_key(schema, client):
    assert set(schema["paths"]) == {"/api/v1/accounts", "/api/v1/accounts/{account_id}/token", "/api/v1/health"}
    assert schema["components"]["securitySchemes"]["serviceKey"] == {
        "type": "http", "scheme": "bearer", "description": schema["components"]["securitySchemes"]["serviceKey"]["description"],
    }
    yaml = client.get("/api/v1/schema")
    assert yaml.status_code == 200 and yaml.content.startswith(b"openapi: 3")


def test_every_status_the_api_gives_is_declared_with_its_headers(schema):
    """Each operation names every status it can answer; each status the headers that come with it."""
    operations = {(path, method): operation for path, item in schema["paths"].items() for method, operation in item.items()}
    common = {"401", "403", "405", "429", "500", "503"}
    assert {key: set(operation["responses"]) for key, operation in operations.items()} == {
        ("/api/v1/health", "get"): {"200"} | common,
        ("/api/v1/accounts", "get"): {"200", "400", "404"} | common,
        (TOKEN, "post"): {"200", "404", "409", "502"} | common,
    }
    expected_headers = {"401": "WWW-Authenticate", "405": "Allow", "429": "Retry-After", "503": "Retry-After"}
    for operation in operations.values():
        for status, response in operation["responses"].items():
            assert set(response["content"]) == {"application/json"}
            headers = response.get("headers", {})
            if status in expected_headers:
                assert headers[expected_headers[status]]["required"] is True, (operation["operationId"], status)
            elif operation["operationId"] != "account_token" or status != "200":
                assert not headers, (operation["operationId"], status)
    assert schema["paths"][TOKEN]["post"]["responses"]["200"]["headers"]["Cache-Control"]["schema"]["enum"] == ["no-store"]
    retry_after = schema["paths"]["/api/v1/health"]["get"]["responses"]["429"]["headers"]["Retry-After"]["schema"]
    assert retry_after == {"type": "integer", "minimum": 1}


def test_the_schema_declares_what_the_api_refuses(schema):
    """A value the schema allows is never refused: the limits the API enforces are in it."""
    parameters = {p["name"]: p for p in schema["paths"]["/api/v1/accounts"]["get"]["parameters"]}
    assert parameters["user"]["required"] is True
    assert parameters["user"]["schema"] | {"example": None} == {
        "type": "string", "minLength": 1, "maxLength": 150, "pattern": r"^[^\x00]*$", "example": None,
    }
    assert parameters["service"]["schema"]["enum"] == ["appmixer:discord", "appmixer:slack"]
    [account_id] = schema["paths"][TOKEN]["post"]["parameters"]
    assert account_id["schema"] | {"example": None} == {
        "type": "integer", "format": "int64", "minimum": 1, "maximum": 2**63 - 1, "example": None,
    }


def test_every_answer_fits_the_schema(api, client, check, standin, alice, settings):
    fresh = seed_account(standin, alice, expires_in=86400)
    expiring = seed_account(standin, alice, expires_in=60)
    lost = seed_account(standin, alice, expires_in=60)
    revoke_at_standin(standin, lost.refresh_token)

    assert check(api.get("/api/v1/health")).status_code == 200
    assert check(api.get("/api/v1/accounts", {"user": "alice"})).status_code == 200
    assert check(api.get("/api/v1/accounts", {"user": "alice", "service": "appmixer:discord"})).status_code == 200
    assert check(api.get("/api/v1/accounts", {"user": "nobody"})).status_code == 404
    # A service id the schema's enum does not hold: the request breaks the schema, the answer keeps it.
    assert check(api.get("/api/v1/accounts", {"user": "alice", "service": "x"}), request_too=False).status_code == 400
    assert check(api.post(f"/api/v1/accounts/{fresh.pk}/token")).status_code == 200
    assert check(api.post(f"/api/v1/accounts/{expiring.pk}/token")).status_code == 200
    assert check(api.post(f"/api/v1/accounts/{lost.pk}/token")).status_code == 409
    assert check(api.post("/api/v1/accounts/999999/token")).status_code == 404
    standin.fail_next("token.refresh_token", status=503)
    expiring_again = seed_account(standin, alice, expires_in=60)
    assert check(api.post(f"/api/v1/accounts/{expiring_again.pk}/token")).status_code == 503

    # Without a key, the request itself breaks the schema's security rule: only the answer is checked.
    assert check(client.get("/api/v1/health"), request_too=False).status_code == 401
    _, scopeless = service_key_create(name="no-scope", scopes=[])
    assert check(client.get("/api/v1/health", HTTP_AUTHORIZATION=f"Bearer {scopeless}")).status_code == 403
    assert check(api.delete("/api/v1/health"), as_method="get").status_code == 405
    assert check(api.get(f"/api/v1/accounts/{fresh.pk}/token"), as_method="post").status_code == 405
    settings.API_AUTH_FAILURE_RATE = "1/d"  # a day's window: none ends between the two calls
    wrong = {"HTTP_AUTHORIZATION": "Bearer bsk_not-a-key-at-all-000000000000000000000"}
    assert check(client.get("/api/v1/health", **wrong)).status_code == 401
    assert check(client.get("/api/v1/health", **wrong)).status_code == 429
    settings.API_THROTTLE_RATE = "1/min"
    api.get("/api/v1/health")
    assert check(api.get("/api/v1/health")).status_code == 429


@pytest.mark.parametrize(
    "failure, status",
    [(ProviderError("The provider refused the refresh: unsupported_grant_type."), 502),
     (EncryptionKeyError("no key decrypts it"), 503)],
)
def test_the_provider_s_refusals_and_an_unreadable_configuration_fit_the_schema(
    api, check, monkeypatch, failure, status
):
    def failing(account):
        raise failure

    monkeypatch.setattr("api.views.fresh_access_token", failing)

    assert check(api.post("/api/v1/accounts/7/token")).status_code == status
