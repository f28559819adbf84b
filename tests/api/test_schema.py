"""The published OpenAPI schema is the API's contract: every answer the API gives, error or not, fits it."""

import json

import pytest
from openapi_core import OpenAPI
from openapi_core.contrib.django import DjangoOpenAPIRequest, DjangoOpenAPIResponse
from openapi_spec_validator import validate

from api.keys import service_key_create
from tests.helpers import revoke_at_standin, seed_account


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

    def check(response, *, request_too=True):
        request = DjangoOpenAPIRequest(response.wsgi_request)
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


def test_every_answer_fits_the_schema(api, client, check, standin, alice, settings):
    fresh = seed_account(standin, alice, expires_in=86400)
    expiring = seed_account(standin, alice, expires_in=60)
    lost = seed_account(standin, alice, expires_in=60)
    revoke_at_standin(standin, lost.refresh_token)

    assert check(api.get("/api/v1/health")).status_code == 200
    assert check(api.get("/api/v1/accounts", {"user": "alice"})).status_code == 200
    assert check(api.get("/api/v1/accounts", {"user": "alice", "service": "appmixer:discord"})).status_code == 200
    assert check(api.get("/api/v1/accounts", {"user": "nobody"})).status_code == 404
    assert check(api.get("/api/v1/accounts", {"user": "alice", "service": "x"})).status_code == 400
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
    settings.API_THROTTLE_RATE = "1/min"
    api.get("/api/v1/health")
    assert check(api.get("/api/v1/health")).status_code == 429
