"""Service keys as an operator handles them: made once, never readable again, revocable, their use on record."""

import logging
from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.admin.models import ADDITION, CHANGE, LogEntry
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from api.models import ServiceKey
from tests.helpers import PRODUCTION, manage

ADD = "/admin/api/servicekey/add/"
LIST = "/admin/api/servicekey/"


def raw_rows():
    """Every column of every key's row, as an attacker with a dump reads them."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM api_servicekey")
        return " ".join(str(value) for row in cursor.fetchall() for value in row)


def create_key(*args):
    out = StringIO()
    call_command("create_service_key", *args, stdout=out)
    return out.getvalue().splitlines()


def test_the_command_prints_the_key_once_alone_on_its_last_line_and_stores_only_a_digest(client, caplog):
    with caplog.at_level(logging.INFO, logger="connectors.audit"):
        lines = create_key("workflow-engine")

    secret = lines[-1]
    assert secret.startswith("bsk_") and len(secret) > 40 and " " not in secret
    assert "workflow-engine" in lines[0] and secret not in lines[0]
    assert secret not in raw_rows() and secret[12:] not in raw_rows()
    key = ServiceKey.objects.get(name="workflow-engine")
    assert key.scope_list == ["tokens:read"] and secret.startswith(key.prefix)
    assert client.get("/api/v1/health", HTTP_AUTHORIZATION=f"Bearer {secret}").json()["key"] == "workflow-engine"
    [audit] = [record.getMessage() for record in caplog.records if record.name == "connectors.audit"]
    assert "create_service_key" in audit and "workflow-engine" in audit and secret not in audit


def test_the_command_takes_a_scope_and_refuses_a_name_in_use_or_an_unknown_scope(db):
    assert ServiceKey.objects.filter(name="bot").count() == 0
    create_key("bot", "--scope", "tokens:read")
    assert ServiceKey.objects.get(name="bot").scopes == "tokens:read"

    with pytest.raises(CommandError, match="exists already"):
        create_key("bot")
    with pytest.raises(CommandError, match="invalid choice"):
        create_key("other", "--scope", "tokens:write")
    assert ServiceKey.objects.count() == 1


def test_the_command_runs_as_a_deploy_script_would(tmp_path):
    database = {"DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3"}
    assert manage("migrate", "--noinput", **PRODUCTION, **database).returncode == 0

    made = manage("create_service_key", "job", **PRODUCTION, **database)

    assert made.returncode == 0, made.stderr
    assert made.stdout.strip().splitlines()[-1].startswith("bsk_")


def test_two_keys_never_share_a_secret_or_a_prefix(db):
    secrets = {create_key(f"key-{n}")[-1] for n in range(20)}
    assert len(secrets) == 20
    assert ServiceKey.objects.values("prefix").distinct().count() == 20


def test_the_last_use_is_written_at_most_once_a_minute(api, service_key):
    key = service_key[0]
    assert api.get("/api/v1/health").status_code == 200
    first = ServiceKey.objects.get(pk=key.pk).last_used_at
    assert first is not None

    with CaptureQueriesContext(connection) as queries:
        assert api.get("/api/v1/health").status_code == 200
    assert not [query for query in queries.captured_queries if query["sql"].startswith("UPDATE \"api_servicekey\"")]
    assert ServiceKey.objects.get(pk=key.pk).last_used_at == first

    ServiceKey.objects.filter(pk=key.pk).update(last_used_at=first - timedelta(seconds=61))
    assert api.get("/api/v1/health").status_code == 200
    assert ServiceKey.objects.get(pk=key.pk).last_used_at > first


def test_the_admin_shows_a_new_key_once_and_never_again(admin_client):
    page = admin_client.post(ADD, {"name": "bot-worker", "scopes": ["tokens:read"]})

    assert page.status_code == 200
    key = ServiceKey.objects.get(name="bot-worker")
    html = page.content.decode()
    [secret] = [word for word in html.replace('"', " ").split() if word.startswith("bsk_") and len(word) > 40]
    assert "shown this once" in html
    assert secret not in raw_rows()
    assert "messages" not in page.cookies and "messages" not in admin_client.session
    for later in (admin_client.get(LIST), admin_client.get(f"{LIST}{key.pk}/change/"), admin_client.get(f"{LIST}{key.pk}/history/")):
        assert later.status_code == 200
        assert secret not in later.content.decode() and secret[12:20] not in later.content.decode()
        assert key.prefix in admin_client.get(LIST).content.decode()
    assert LogEntry.objects.get(object_id=str(key.pk)).action_flag == ADDITION
    assert admin_client.get("/api/v1/health", HTTP_AUTHORIZATION=f"Bearer {secret}").status_code == 200


def test_revoking_in_the_admin_ends_the_key_at_once_and_is_on_record(admin_client, api, service_key):
    key = service_key[0]
    assert api.get("/api/v1/health").status_code == 200

    answer = admin_client.post(LIST, {"action": "revoke", "_selected_action": [key.pk]}, follow=True)

    assert "Revoked workflow-engine: calls with it now get 401." in answer.content.decode()
    assert api.get("/api/v1/health").status_code == 401
    assert ServiceKey.objects.get(pk=key.pk).revoked_at <= timezone.now()
    entry = LogEntry.objects.get(object_id=str(key.pk), action_flag=CHANGE)
    assert entry.get_change_message() == "Revoked" and entry.user.username == "admin"
    assert "revoked" in admin_client.get(LIST).content.decode()


def test_a_key_s_scopes_can_be_taken_away_in_the_admin(admin_client, api, service_key):
    key = service_key[0]

    admin_client.post(f"{LIST}{key.pk}/change/", {"name": key.name})

    assert ServiceKey.objects.get(pk=key.pk).scopes == ""
    assert api.get("/api/v1/health").status_code == 403


def test_the_debug_page_of_a_failed_api_call_hides_the_key(api, service_key, settings, monkeypatch, standin, alice):
    from tests.helpers import seed_account

    account = seed_account(standin, alice, expires_in=86400)
    secret = service_key[1]
    settings.DEBUG = True
    api.raise_request_exception = False

    def failing(account):
        presented = secret
        raise RuntimeError(f"failed while holding {presented}")

    monkeypatch.setattr("api.views.fresh_access_token", failing)

    page = api.post(f"/api/v1/accounts/{account.pk}/token")

    assert page.status_code == 500 and page["Content-Type"].startswith("text/html")
    html = page.content.decode()
    assert "Traceback" in html and "HTTP_AUTHORIZATION" in html and "failed while holding" in html
    assert secret not in html and secret[4:20] not in html
