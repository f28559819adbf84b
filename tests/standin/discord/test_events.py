"""The Discord stand-in's webhook events: signed as Discord signs them, sent when Discord sends them,
and "remove the app" as a person does it at Discord."""

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from standin.discord import StandIn
from tests.helpers import read_form, standin_tokens

SERVER = "100000000000000004"  # the default user's server
USER = "100000000000000003"  # the default user


class Endpoint(ThreadingHTTPServer):
    """An app's events endpoint: keeps each delivery and answers `status`."""

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Receive)
        self.deliveries = []
        self.status = 204

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}/webhooks/discord/events"

    def events(self):
        return [json.loads(body) for _, body in self.deliveries]


class Receive(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.deliveries.append((dict(self.headers), body))
        self.send_response(self.server.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        """Quiet: the test reads the deliveries."""


@pytest.fixture
def endpoint():
    server = Endpoint()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def sd(endpoint):
    with StandIn() as standin:
        standin.app.event_webhooks_url = endpoint.url
        yield standin


def verified(standin, headers, body):
    """What the Backoffice does with a delivery: Ed25519 over the timestamp and the body, with verify_key."""
    key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(standin.app.verify_key))
    try:
        key.verify(bytes.fromhex(headers["X-Signature-Ed25519"]), headers["X-Signature-Timestamp"].encode() + body)
    except InvalidSignature:
        return False
    return True


def application(standin):
    return requests.get(f"{standin.api_base_url}/oauth2/applications/@me", timeout=5,
                        headers={"Authorization": f"Bot {standin.app.bot_token}"}).json()


def test_each_stand_in_has_its_own_public_key_shown_as_verify_key():
    with StandIn() as one, StandIn() as other:
        assert re.fullmatch(r"[0-9a-f]{64}", one.app.verify_key)
        assert one.app.verify_key != other.app.verify_key
        assert application(one)["verify_key"] == one.app.verify_key
        assert "event_webhooks_url" not in application(one)
        assert StandIn(signing_seed=b"s" * 32).app.verify_key == StandIn(signing_seed=b"s" * 32).app.verify_key


def test_the_events_url_is_set_from_python_or_the_control_api_and_shown_in_the_application(sd, endpoint):
    assert application(sd)["event_webhooks_url"] == endpoint.url
    ctl = f"{sd.base_url}/_standin/events_url"
    assert requests.post(ctl, json={"url": None}, timeout=5).json() == {"url": None}
    assert "event_webhooks_url" not in application(sd)
    assert requests.post(ctl, json={"url": "ftp://nope"}, timeout=5).status_code == 400
    assert requests.post(ctl, json={"url": endpoint.url}, timeout=5).status_code == 200
    assert sd.app.event_webhooks_url == endpoint.url


def test_a_ping_is_signed_with_the_stand_ins_key_and_answers_the_endpoints_status(sd, endpoint):
    assert sd.ping() == 204
    headers, body = endpoint.deliveries[0]
    assert json.loads(body) == {"version": 1, "application_id": sd.app.client_id, "type": 0}
    assert headers["Content-Type"] == "application/json"
    assert verified(sd, headers, body)
    assert not verified(sd, headers, body + b" ")
    endpoint.status = 401
    assert requests.post(f"{sd.base_url}/_standin/ping", timeout=5).json() == {"status": 401}
    assert sd.deliveries == [("PING", 204), ("PING", 401)]


def test_a_consent_sends_application_authorized_before_the_browser_goes_back(sd, endpoint):
    standin_tokens(sd, scope="identify guilds")
    standin_tokens(sd, scope="identify guilds bot", guild_id=SERVER)
    user_install, guild_install = endpoint.events()
    assert all(verified(sd, headers, body) for headers, body in endpoint.deliveries)
    assert user_install["type"] == 1 and user_install["application_id"] == sd.app.client_id
    event = user_install["event"]
    assert event["type"] == "APPLICATION_AUTHORIZED" and event["timestamp"].endswith("+00:00")
    assert event["data"]["user"]["id"] == USER and event["data"]["user"]["username"] == "standin_user"
    assert event["data"]["scopes"] == ["identify", "guilds"] and event["data"]["integration_type"] == 1
    assert "guild" not in event["data"]
    data = guild_install["event"]["data"]
    assert data["integration_type"] == 0 and data["guild"]["id"] == SERVER and "bot" in data["scopes"]


def test_nothing_is_sent_without_an_events_url_and_an_endpoint_that_is_down_stops_no_consent(sd, endpoint):
    sd.app.event_webhooks_url = None
    standin_tokens(sd, scope="identify")
    assert sd.ping() is None and endpoint.deliveries == [] and sd.deliveries == []
    sd.app.event_webhooks_url = "http://127.0.0.1:9/webhooks/discord/events"
    standin_tokens(sd, scope="identify")
    assert sd.deliveries == [("APPLICATION_AUTHORIZED", None)]


def test_remove_app_revokes_every_grant_of_that_person_and_sends_application_deauthorized(sd, endpoint):
    first = standin_tokens(sd, scope="identify guilds")
    second = standin_tokens(sd, scope="identify guilds bot", guild_id=SERVER)
    other = sd.create_grant(sd.add_user(username="bob", guilds=[]), "identify")
    endpoint.deliveries.clear()

    assert sd.remove_app(USER) == (2, 204)
    for tokens in (first, second):
        assert not sd.access_token_valid(tokens["access_token"])
        assert not sd.refresh_token_valid(tokens["refresh_token"])
    assert sd.access_token_valid(other.access_token)
    (headers, body), = endpoint.deliveries
    assert verified(sd, headers, body)
    event = json.loads(body)["event"]
    assert event["type"] == "APPLICATION_DEAUTHORIZED" and event["data"] == {"user": event["data"]["user"]}
    assert event["data"]["user"]["id"] == USER


def test_remove_app_over_the_control_api(sd, endpoint):
    standin_tokens(sd, scope="identify")
    answer = requests.post(f"{sd.base_url}/_standin/remove_app", json={"user_id": USER}, timeout=5)
    assert answer.json() == {"revoked": 1, "status": 204}
    assert endpoint.events()[-1]["event"]["type"] == "APPLICATION_DEAUTHORIZED"
    assert requests.post(f"{sd.base_url}/_standin/remove_app", json={"user_id": "1"}, timeout=5).status_code == 400


def test_the_index_page_lists_who_authorized_the_app_with_a_button_to_remove_it(sd, endpoint):
    empty = requests.get(sd.base_url + "/", timeout=5).text
    assert "Nobody has authorized it." in empty and endpoint.url in empty
    tokens = standin_tokens(sd, scope="identify")
    page = requests.get(sd.base_url + "/", timeout=5).text
    assert "Stand-in User" in page and "@standin_user" in page
    form = read_form(page)
    assert form.action == "/remove-app" and form.fields == {"user_id": USER}
    assert form.buttons == [("action", "remove")] and "Remove the app" in page

    removed = requests.post(sd.base_url + form.action, data=form.fields, timeout=5)
    assert removed.status_code == 200 and "not discord" in removed.text.lower()
    assert "Stand-in User removed Backoffice Stand-in: 1 grant(s) revoked." in removed.text
    assert f"APPLICATION_DEAUTHORIZED went to <code>{endpoint.url}</code>: it answered 204." in removed.text
    assert not sd.access_token_valid(tokens["access_token"])
    assert "Nobody has authorized it." in requests.get(sd.base_url + "/", timeout=5).text
    assert requests.post(sd.base_url + "/remove-app", data={"user_id": "1"}, timeout=5).status_code == 400
