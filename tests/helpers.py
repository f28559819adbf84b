"""Small functions several test modules share."""

from urllib.parse import parse_qs, urlsplit

import requests
from django.db import connection
from django.urls import reverse

from connectors.models import ConnectorConfig, ConnectorValue
from tests.conftest import SERVICE_ID


def raw_values():
    """The value column as the database holds it, read with SQL: what an attacker with a dump sees."""
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {quote('key')}, {quote('value')} FROM {quote(ConnectorValue._meta.db_table)}"
        )
        return dict(cursor.fetchall())


def config_admin_url(view):
    """An admin page of the stored Discord configuration: change, history, test_credentials."""
    config = ConnectorConfig.objects.get(service_id=SERVICE_ID)
    return reverse(f"admin:connectors_connectorconfig_{view}", args=[config.pk])


REDIRECT_URI = "https://backoffice.example.com/auth/discord/callback"


# Driving the connect flow with Django's test client on this side and real
# HTTP to the local Discord stand-in on the other.


def start(client, next_url=None):
    response = client.get("/auth/discord/connect", {"next": next_url} if next_url else {})
    assert response.status_code == 302, response.content
    return response["Location"]


def decide(standin, authorize_url, action="authorize", **extra):
    """Press a button on the stand-in's consent page; return where it sends the browser."""
    query = {k: v[0] for k, v in parse_qs(urlsplit(authorize_url).query).items()}
    query.update(action=action, **extra)
    answer = requests.get(
        standin.base_url + "/oauth2/authorize/_approve", params=query, allow_redirects=False, timeout=5
    )
    assert answer.status_code == 302, answer.text
    return answer.headers["Location"]


def finish(client, callback_url):
    parts = urlsplit(callback_url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == REDIRECT_URI
    return client.get(f"{parts.path}?{parts.query}")


def connect(client, standin, **extra):
    return finish(client, decide(standin, start(client), **extra))
