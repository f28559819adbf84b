"""The Slack stand-in is only useful if it is as strict as Slack, so these tests talk real HTTP to it."""

import re
import subprocess
import sys
import time
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from standin.slack import DEFAULT_APP, StandIn
from tests.helpers import REPO, read_form, read_line

REDIRECT = "http://app.test/auth/slack/callback"
CLIENT = (DEFAULT_APP.client_id, DEFAULT_APP.client_secret)
HEX32 = re.compile(r"[0-9a-f]{32}")


@pytest.fixture
def sd():
    with StandIn(redirect_uris=[REDIRECT]) as standin:
        yield standin


@pytest.fixture
def rotating():
    with StandIn(redirect_uris=[REDIRECT], token_rotation=True) as standin:
        yield standin


@pytest.fixture
def http():
    with requests.Session() as session:
        yield session


def authorize_query(**extra):
    query = {"client_id": DEFAULT_APP.client_id, "scope": "chat:write,channels:read", "redirect_uri": REDIRECT,
             "state": "st4te"}
    query.update(extra)
    return {k: v for k, v in query.items() if v is not None}


def click(sd, http, action="authorize", **extra):
    """Presses a button through the non-browser shortcut; the redirect's query."""
    answer = http.get(sd.authorize_url + "/_approve", params={**authorize_query(**extra), "action": action},
                      allow_redirects=False)
    assert answer.status_code == 302, answer.text
    return {k: v[0] for k, v in parse_qs(urlsplit(answer.headers["Location"]).query, keep_blank_values=True).items()}


def access(sd, http, auth=CLIENT, **data):
    """oauth.v2.access; Slack answers 200 whatever it says, so the JSON is what counts."""
    answer = http.post(sd.api_base_url + "/oauth.v2.access", auth=auth, data=data)
    assert answer.status_code == 200, answer.text
    return answer.json()


def install(sd, http, **extra):
    body = access(sd, http, code=click(sd, http, **extra)["code"], redirect_uri=REDIRECT)
    assert body["ok"] is True, body
    return body


def method(sd, http, name, token, **data):
    answer = http.post(f"{sd.api_base_url}/{name}", headers={"Authorization": f"Bearer {token}"}, data=data)
    assert answer.status_code == 200 and answer.headers["Content-Type"] == "application/json"
    return answer


def test_ids_and_secrets_have_slacks_shapes():
    assert re.fullmatch(r"\d+\.\d+", DEFAULT_APP.client_id)
    assert HEX32.fullmatch(DEFAULT_APP.client_secret) and HEX32.fullmatch(DEFAULT_APP.signing_secret)
    with StandIn() as sd:
        assert sd.api_base_url == sd.base_url + "/api" and sd.authorize_url == sd.base_url + "/oauth/v2/authorize"
        assert re.fullmatch(r"U[A-Z0-9]+", sd.logged_in.id) and re.fullmatch(r"T[A-Z0-9]+", sd.add_workspace().id)


def test_a_browser_picks_a_workspace_and_presses_allow(sd, http):
    page = http.get(sd.authorize_url, params=authorize_query(user_scope="search:read"))
    assert page.status_code == 200 and "This is not Slack." in page.text
    assert "Send messages as the app" in page.text and "Search a workspace&#x27;s content" in page.text
    form = read_form(page.text, select="team")
    assert form.action == "/oauth/v2/authorize"
    assert form.options == [("T0STANDIN01", False), ("T0STANDIN02", False)]
    assert ("action", "authorize") in form.buttons and ("action", "cancel") in form.buttons
    assert 'value="authorize">Allow</button>' in page.text

    back = http.post(sd.authorize_url, data={**form.fields, "team": "T0STANDIN02", "action": "authorize"},
                     allow_redirects=False)
    assert back.status_code == 302 and back.headers["Location"].startswith(REDIRECT + "?code=")
    query = parse_qs(urlsplit(back.headers["Location"]).query)
    assert query["state"] == ["st4te"]
    body = access(sd, http, code=query["code"][0], redirect_uri=REDIRECT)
    assert body["team"] == {"id": "T0STANDIN02", "name": "Stand-in Lab"}


def test_a_bot_install_without_rotation_answers_a_long_lived_bot_token(sd, http):
    body = install(sd, http)
    assert body["token_type"] == "bot" and body["access_token"].startswith("xoxb-")
    assert body["scope"] == "chat:write,channels:read" and body["authed_user"] == {"id": "U0STANDIN01"}
    assert body["team"] == {"id": "T0STANDIN01", "name": "Stand-in Workspace"}
    assert body["app_id"] == DEFAULT_APP.app_id and re.fullmatch(r"U[A-Z0-9]+", body["bot_user_id"])
    assert body["enterprise"] is None and body["is_enterprise_install"] is False
    assert "refresh_token" not in body and "expires_in" not in body
    assert sd.access_token_valid(body["access_token"])


def test_user_scopes_add_the_persons_token_under_authed_user(sd, http):
    body = install(sd, http, user_scope="search:read,users:read")
    person = body["authed_user"]
    assert person["id"] == "U0STANDIN01" and person["token_type"] == "user"
    assert person["access_token"].startswith("xoxp-") and person["scope"] == "search:read,users:read"
    assert body["access_token"].startswith("xoxb-")
    only_user = install(sd, http, scope=None, user_scope="search:read")
    assert "access_token" not in only_user and only_user["authed_user"]["access_token"].startswith("xoxp-")


def test_rotation_issues_expiring_pairs_and_a_refresh_kills_the_old_one(rotating, http):
    body = install(rotating, http, user_scope="search:read")
    assert body["access_token"].startswith("xoxe.xoxb-") and body["refresh_token"].startswith("xoxe-1-")
    assert body["expires_in"] == 43200
    person = body["authed_user"]
    assert person["access_token"].startswith("xoxe.xoxp-") and person["expires_in"] == 43200

    new = access(rotating, http, grant_type="refresh_token", refresh_token=body["refresh_token"])
    assert new["ok"] and new["token_type"] == "bot" and new["scope"] == "chat:write,channels:read"
    assert new["access_token"].startswith("xoxe.xoxb-") and new["refresh_token"] != body["refresh_token"]
    assert new["team"]["id"] == body["team"]["id"] and new["expires_in"] == 43200
    assert access(rotating, http, grant_type="refresh_token", refresh_token=body["refresh_token"]) == {
        "ok": False, "error": "invalid_refresh_token"}
    assert not rotating.access_token_valid(body["access_token"]) and rotating.access_token_valid(new["access_token"])

    mine = access(rotating, http, grant_type="refresh_token", refresh_token=person["refresh_token"])
    assert mine["token_type"] == "user" and mine["access_token"].startswith("xoxe.xoxp-")
    assert mine["scope"] == "search:read" and "bot_user_id" not in mine
    assert rotating.refresh_token_valid(mine["refresh_token"]) and rotating.refresh_token_valid(new["refresh_token"])


@pytest.mark.parametrize("auth, data, error", [
    (("999.999", CLIENT[1]), {}, "invalid_client_id"),
    (None, {}, "invalid_client_id"),
    ((CLIENT[0], "0" * 32), {}, "bad_client_secret"),
    (CLIENT, {"redirect_uri": "http://elsewhere.test/cb"}, "bad_redirect_uri"),
    (CLIENT, {"redirect_uri": REDIRECT}, "invalid_code"),
    (CLIENT, {"grant_type": "refresh_token", "refresh_token": "xoxe-1-nope"}, "invalid_refresh_token"),
    (CLIENT, {"grant_type": "client_credentials"}, "invalid_grant_type"),
])
def test_every_refusal_is_200_with_ok_false_in_slacks_order(sd, http, auth, data, error):
    # A made-up code: the client and the redirect are checked before it.
    assert access(sd, http, auth=auth, code="made-up", **data) == {"ok": False, "error": error}


def test_the_client_may_come_as_form_fields(sd, http):
    code = click(sd, http)["code"]
    body = access(sd, http, auth=None, code=code, redirect_uri=REDIRECT, client_id=CLIENT[0], client_secret=CLIENT[1])
    assert body["ok"] is True


def test_a_code_is_single_use_and_bound_to_its_redirect_uri(sd, http):
    sd.app.redirect_uris.append(REDIRECT + "/other")
    code = click(sd, http)["code"]
    assert access(sd, http, code=code, redirect_uri=REDIRECT + "/other")["error"] == "bad_redirect_uri"
    assert access(sd, http, code=code)["error"] == "bad_redirect_uri"
    assert access(sd, http, code=code, redirect_uri=REDIRECT)["ok"] is True
    assert access(sd, http, code=code, redirect_uri=REDIRECT)["error"] == "invalid_code"


def test_without_redirect_uri_the_first_registered_one_is_used_and_none_is_sent_back(sd, http):
    back = http.get(sd.authorize_url + "/_approve", allow_redirects=False,
                    params={**authorize_query(redirect_uri=None), "action": "authorize"})
    assert back.headers["Location"].startswith(REDIRECT + "?code=")
    code = parse_qs(urlsplit(back.headers["Location"]).query)["code"][0]
    assert access(sd, http, code=code)["ok"] is True


def test_cancel_redirects_with_access_denied_and_the_state_even_empty(sd, http):
    assert click(sd, http, action="cancel") == {"error": "access_denied", "state": "st4te"}
    assert click(sd, http, action="cancel", state=None) == {"error": "access_denied", "state": ""}
    assert click(sd, http, state=None)["state"] == ""


def test_the_workspace_is_picked_with_team_and_must_be_the_persons(sd, http):
    assert install(sd, http, team="T0STANDIN02")["team"]["id"] == "T0STANDIN02"
    stranger = sd.add_workspace(name="Not hers")
    answer = http.get(sd.authorize_url + "/_approve", allow_redirects=False,
                      params={**authorize_query(team=stranger.id), "action": "authorize"})
    assert answer.status_code == 400 and "Pick a workspace you are in." in answer.text
    bob = sd.add_user(name="bob", real_name="Bob")
    assert install(sd, http, user_id=bob.id)["authed_user"]["id"] == bob.id


@pytest.mark.parametrize("bad", [
    {"client_id": "1.2"},
    {"redirect_uri": "http://elsewhere.test/cb"},
    {"scope": None},
    {"scope": "chat:write channels:read"},
])
def test_bad_authorize_requests_get_an_error_page_and_never_a_redirect(sd, http, bad):
    for url in (sd.authorize_url, sd.authorize_url + "/_approve"):
        answer = http.get(url, params={**authorize_query(**bad), "action": "authorize"}, allow_redirects=False)
        assert answer.status_code == 400 and "Location" not in answer.headers


def test_auth_test_names_the_bot_or_the_person_and_the_scopes(sd, http):
    body = install(sd, http, user_scope="search:read")
    bot = method(sd, http, "auth.test", body["access_token"])
    assert bot.headers["X-OAuth-Scopes"] == "chat:write,channels:read"
    assert bot.json()["ok"] and bot.json()["team_id"] == "T0STANDIN01" and bot.json()["bot_id"].startswith("B")
    assert bot.json()["user_id"] == body["bot_user_id"]
    person = method(sd, http, "auth.test", body["authed_user"]["access_token"])
    assert person.headers["X-OAuth-Scopes"] == "search:read"
    assert person.json()["user_id"] == "U0STANDIN01" and "bot_id" not in person.json()
    assert method(sd, http, "auth.test", "xoxb-nope").json() == {"ok": False, "error": "invalid_auth"}
    assert http.post(sd.api_base_url + "/auth.test").json() == {"ok": False, "error": "not_authed"}


def test_an_expired_rotating_token_is_token_expired(rotating, http):
    body = install(rotating, http)
    rotating.grants[0].expires_at = time.time() - 1
    assert method(rotating, http, "auth.test", body["access_token"]).json()["error"] == "token_expired"
    assert access(rotating, http, grant_type="refresh_token", refresh_token=body["refresh_token"])["ok"] is True


def test_auth_revoke_kills_the_token_and_its_refresh_token(rotating, http):
    body = install(rotating, http)
    assert method(rotating, http, "auth.revoke", body["access_token"], test="true").json() == {
        "ok": True, "revoked": False}
    assert rotating.access_token_valid(body["access_token"])
    assert method(rotating, http, "auth.revoke", body["access_token"]).json() == {"ok": True, "revoked": True}
    assert not rotating.access_token_valid(body["access_token"])
    assert not rotating.refresh_token_valid(body["refresh_token"])
    assert method(rotating, http, "auth.test", body["access_token"]).json()["error"] == "invalid_auth"
    assert access(rotating, http, grant_type="refresh_token", refresh_token=body["refresh_token"])["error"] == (
        "invalid_refresh_token")
    again = http.post(rotating.api_base_url + "/auth.revoke", data={"token": body["access_token"]})
    assert again.json() == {"ok": False, "error": "invalid_auth"}
    assert rotating.grants == []


def test_faults_keep_their_status_in_slacks_json_and_counts_go_by_kind(sd, http):
    sd.fail_next("token", status=503)
    failed = http.post(sd.api_base_url + "/oauth.v2.access", auth=CLIENT, data={"code": "x"})
    assert failed.status_code == 503 and failed.json()["ok"] is False
    sd.fail_next("auth_test", status=429)
    limited = http.post(sd.api_base_url + "/auth.test")
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "1"
    assert limited.json() == {"ok": False, "error": "ratelimited"}
    unknown = http.post(sd.api_base_url + "/chat.nothing")
    assert unknown.status_code == 404 and unknown.json() == {"ok": False, "error": "unknown_method"}
    install(sd, http)
    access(sd, http, grant_type="refresh_token", refresh_token="xoxe-1-nope")
    assert (sd.count("token"), sd.count("token.refresh_token"), sd.count("authorize")) == (3, 1, 1)
    assert sd.count_429("auth_test") == 1


def test_control_api(sd, http):
    ctl = sd.base_url + "/_standin"
    team = http.post(ctl + "/workspaces", json={"name": "Carol's Co"}).json()
    assert team["domain"] == "carol-s-co"
    carol = http.post(ctl + "/users", json={"name": "carol", "real_name": "Carol", "workspaces": [team["id"]]}).json()
    assert carol["workspaces"] == [team["id"]]
    assert http.post(ctl + "/users", json={"workspaces": ["T404"]}).status_code == 400
    assert http.post(ctl + "/login", json={"user_id": carol["id"]}).status_code == 200
    assert install(sd, http)["team"]["id"] == team["id"]
    assert http.post(ctl + "/app", json={"token_rotation": True}).json()["token_rotation"] is True
    assert "refresh_token" in install(sd, http)
    assert http.post(ctl + "/app", json={"colour": "red"}).status_code == 400
    stats = http.get(ctl + "/stats").json()
    assert stats["live_grants"] == 2 and stats["workspaces"] == 3 and stats["counts"]["token.authorization_code"] == 2
    http.post(ctl + "/reset")
    assert http.get(ctl + "/stats").json()["live_grants"] == 0 and sd.logged_in.id == "U0STANDIN01"


def test_python_m_standin_slack_serves_on_its_own():
    process = subprocess.Popen([sys.executable, "-m", "standin.slack", "--port", "0", "--token-rotation"],
                               cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        base_url = re.search(r"on (http://\S+)", read_line(process, timeout=30)).group(1)
        # The banner comes in one write: the rest is already in the pipe's buffer.
        lines = [process.stdout.readline().strip() for _ in range(5)]
        assert lines[:2] == [f"SLACK_AUTHORIZE_URL={base_url}/oauth/v2/authorize", f"SLACK_API_BASE_URL={base_url}/api"]
        assert "token rotation: on" in lines
        index = requests.get(base_url + "/", timeout=5)
        assert index.status_code == 200 and "This is not Slack." in index.text
    finally:
        process.terminate()
        assert process.wait(10) == 0
