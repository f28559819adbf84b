"""Schemathesis drives the API from its published schema, every check on, against the live server.

It sends what the schema allows and what it does not (negative data), every
method to every path, missing and wrong keys, and checks each answer: no
5xx, a status and headers the schema names, a body that fits, valid data
accepted, invalid data refused, Allow on a 405. Run through its command line
(`st run`), the way a caller would: its pytest integration does not run
under pytest 9.2. The failure output names the seed and a curl command that
reproduces each failure.
"""

import subprocess
import sys
from datetime import timedelta

from django.utils import timezone

from api.keys import service_key_create
from connectors.models import ConnectedAccount
from tests.conftest import SERVICE_ID

# Test cases per operation and phase: the whole run takes some 20 seconds.
MAX_EXAMPLES = 25


def test_the_api_answers_whatever_it_is_sent_as_its_schema_says(live_server, transactional_db, settings, alice, tmp_path):
    # The paces are out of its reach: they have tests of their own (test_endpoints.py,
    # test_refused_keys.py), and schemathesis takes a 429 to a wrong key for auth not enforced.
    settings.API_THROTTLE_RATE = "1000000/min"
    settings.API_AUTH_FAILURE_RATE = "1000000/min"
    _, secret = service_key_create(name="schemathesis", scopes=["tokens:read"])
    # The schema's examples (user alice, account 7) name data that exists, so
    # that 200s are checked too; a valid token, so no provider is called.
    ConnectedAccount.objects.create(
        pk=7, user=alice, service_id=SERVICE_ID, uid="80351110224678912", username="alice",
        access_token="access-token-of-account-7", refresh_token="refresh-token-of-account-7",
        scopes="identify guilds", expires_at=timezone.now() + timedelta(days=1),
    )

    run = subprocess.run(
        [
            sys.executable, "-m", "schemathesis.cli", "run", f"{live_server.url}/api/v1/schema?format=json",
            "--checks", "all", "--mode", "all", "--max-examples", str(MAX_EXAMPLES), "--workers", "1",
            "--header", f"Authorization: Bearer {secret}", "--generation-database", "none",
            "--request-timeout", "10", "--no-color",
        ],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )

    assert run.returncode == 0, run.stdout + run.stderr
    # Every phase ran (none skipped) and passed.
    for phase in ("Examples", "Coverage", "Fuzzing", "Stateful"):
        assert f"✅  {phase}" in run.stdout, run.stdout
