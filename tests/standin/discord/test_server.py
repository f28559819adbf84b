"""The stand-in is only useful if it is as strict as Discord, so these tests talk real HTTP to it."""

from __future__ import annotations

import re
import threading
import time
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from standin.discord import DEFAULT_APP, StandIn
from standin.discord.ratelimit import bucket_of
from tests.helpers import read_form

REDIRECT = "http://app.test/auth/discord/callback"
CLIENT = (DEFAULT_APP.client_id, DEFAULT_APP.client_secret)
FORM = "application/x-www-form-urlencoded"
BUCKET_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "X-RateLimit-Reset-After",
                  "X-RateLimit-Bucket")
THREE_DECIMALS = re.compile(r"^\d+\.\d{3}$")


@pytest.fixture
def sd():
    with StandIn(redirect_uris=[REDIRECT]) as standin:
        yield standin


@pytest.fixture
def http():
    with requests.Session() as session:
        yield session


def authorize_query(**extra) -> dict[str, str]:
    query = {"client_id": DEFAULT_APP.client_id, "response_type": "code", "redirect_uri": REDIRECT,
             "scope": "identify email guilds", "state": "st4te"}
    query.update(extra)
    return {k: v for k, v in query.items() if v is not None}


def click(sd, http, action="authorize", **extra) -> dict[str, str]:
    """Approves through the non-browser shortcut and returns the redirect's query."""
    resp = http.get(sd.base_url + "/oauth2/authorize/_approve", params={**authorize_query(**extra), "action": action},
                    allow_redirects=False)
    assert resp.status_code == 302, resp.text
    return {k: v[0] for k, v in parse_qs(urlsplit(resp.headers["Location"]).query).items()}


def exchange(sd, http, code, redirect_uri=REDIRECT, auth=CLIENT):
    return http.post(sd.api_base_url + "/oauth2/token", auth=auth,
                     data={"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri})


def refresh(sd, http, token, auth=CLIENT, timeout=None):
    return http.post(sd.api_base_url + "/oauth2/token", auth=auth, timeout=timeout,
                     data={"grant_type": "refresh_token", "refresh_token": token})


def tokens(sd, http, **extra) -> dict:
    resp = exchange(sd, http, click(sd, http, **extra)["code"])
    assert resp.status_code == 200, resp.text
    return resp.json()


def get(sd, http, path, token, scheme="Bearer"):
    return http.get(sd.api_base_url + path, headers={"Authorization": f"{scheme} {token}"})


def test_browser_flow_from_consent_page_to_users_me(sd, http):
    page = http.get(sd.authorize_url, params=authorize_query())
    assert page.status_code == 200
    assert "stand-in" in page.text.lower() and "not discord" in page.text.lower()
    assert "Stand-in User" in page.text and "email" in page.text
    form = read_form(page.text)
    assert form.action == "/oauth2/authorize"
    assert ("action", "authorize") in form.buttons and ("action", "cancel") in form.buttons

    back = http.post(sd.authorize_url, data={**form.fields, "action": "authorize"}, allow_redirects=False)
    assert back.status_code == 302
    location = urlsplit(back.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT
    query = parse_qs(location.query)
    assert query["state"] == ["st4te"] and "guild_id" not in query

    resp = exchange(sd, http, query["code"][0])
    assert resp.status_code == 200
    body = resp.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "refresh_token", "scope"}
    assert body["token_type"] == "Bearer" and body["expires_in"] == 604800
    assert body["scope"] == "identify email guilds" and len(body["access_token"]) >= 30

    me = get(sd, http, "/users/@me", body["access_token"])
    assert me.status_code == 200 and me.headers["Content-Type"] == "application/json"
    user = me.json()
    assert user["id"] == "100000000000000003" and user["username"] == "standin_user"
    assert user["discriminator"] == "0" and user["email"] == "standin_user@standin.invalid" and user["verified"]
    guilds = get(sd, http, "/users/@me/guilds", body["access_token"]).json()
    assert guilds[0]["name"] == "Stand-in User's server" and isinstance(guilds[0]["permissions"], str)
    oauth = get(sd, http, "/oauth2/@me", body["access_token"]).json()
    assert oauth["application"]["id"] == DEFAULT_APP.client_id and oauth["scopes"] == ["identify", "email", "guilds"]
    assert oauth["user"]["id"] == user["id"] and oauth["expires"].endswith("+00:00")


def test_email_only_with_email_scope_and_identify_needed(sd, http):
    body = tokens(sd, http, scope="identify")
    assert "email" not in get(sd, http, "/users/@me", body["access_token"]).json()
    guilds_only = tokens(sd, http, scope="guilds")
    assert get(sd, http, "/users/@me", guilds_only["access_token"]).json() == {"message": "401: Unauthorized",
                                                                               "code": 0}


def test_bot_install_picks_guild_and_reports_it(sd, http):
    alice = sd.add_user(username="alice", guilds=[])
    mine = sd.add_guild(alice, name="Mine")
    sd.add_guild(alice, name="Not mine", owner=False, permissions="0")
    sd.login(alice)
    page = http.get(sd.authorize_url, params=authorize_query(scope="bot applications.commands", permissions="8",
                                                             guild_id=mine.id))
    assert read_form(page.text, select="guild_id").options == [(mine.id, True)]

    back = click(sd, http, scope="bot applications.commands", permissions="8", guild_id=mine.id)
    assert back["guild_id"] == mine.id and back["permissions"] == "8" and back["state"] == "st4te"
    assert not mine.bot_added
    body = exchange(sd, http, back["code"]).json()
    assert body["guild"]["id"] == mine.id and body["guild"]["owner_id"] == alice.id
    assert mine.bot_added and sd.grants[-1].guild is mine


def test_code_is_single_use(sd, http):
    code = click(sd, http)["code"]
    assert exchange(sd, http, code).status_code == 200
    again = exchange(sd, http, code)
    assert again.status_code == 400
    assert again.json() == {"error": "invalid_grant", "error_description": 'Invalid "code" in request.'}


def test_code_is_bound_to_its_redirect_uri(sd, http):
    code = click(sd, http)["code"]
    wrong = exchange(sd, http, code, redirect_uri=REDIRECT + "/")
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    missing = http.post(sd.api_base_url + "/oauth2/token", auth=CLIENT,
                        data={"grant_type": "authorization_code", "code": code})
    assert missing.status_code == 400 and missing.json()["error"] == "invalid_grant"
    assert exchange(sd, http, code).status_code == 200


def test_redirect_keeps_its_own_query_and_omits_absent_state(http):
    registered = "http://app.test/cb?tenant=a%20b"
    with StandIn(redirect_uris=[registered]) as sd:
        back = http.get(sd.base_url + "/oauth2/authorize/_approve", allow_redirects=False,
                        params={**authorize_query(redirect_uri=registered, state=None), "action": "authorize"})
        location = back.headers["Location"]
        assert location.startswith("http://app.test/cb?tenant=a%20b&code=")
        assert "state" not in parse_qs(urlsplit(location).query)


def test_refresh_rotates_both_tokens(sd, http):
    first = tokens(sd, http)
    second = refresh(sd, http, first["refresh_token"])
    assert second.status_code == 200
    new = second.json()
    assert new["refresh_token"] != first["refresh_token"] and new["access_token"] != first["access_token"]
    assert "guild" not in new and new["scope"] == first["scope"]
    assert not sd.refresh_token_valid(first["refresh_token"]) and not sd.access_token_valid(first["access_token"])
    assert refresh(sd, http, first["refresh_token"]).json()["error"] == "invalid_grant"
    assert get(sd, http, "/users/@me", first["access_token"]).status_code == 401
    assert get(sd, http, "/users/@me", new["access_token"]).status_code == 200


def test_refresh_without_client_authentication_is_invalid_client(sd, http):
    first = tokens(sd, http)
    resp = refresh(sd, http, first["refresh_token"], auth=None)
    assert resp.status_code == 401 and resp.json() == {"error": "invalid_client"}
    form_auth = http.post(sd.api_base_url + "/oauth2/token",
                          data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"],
                                "client_id": CLIENT[0], "client_secret": CLIENT[1]})
    assert form_auth.status_code == 200


@pytest.mark.parametrize("which", ["access_token", "refresh_token"])
def test_revoking_either_token_ends_the_grant(sd, http, which):
    body = tokens(sd, http)
    resp = http.post(sd.api_base_url + "/oauth2/token/revoke", auth=CLIENT,
                     data={"token": body[which], "token_type_hint": which})
    assert resp.status_code == 200 and resp.json() == {}
    assert get(sd, http, "/users/@me", body["access_token"]).status_code == 401
    assert refresh(sd, http, body["refresh_token"]).json()["error"] == "invalid_grant"
    assert sd.grants == []


def test_revoke_of_unknown_token_is_fine_but_needs_a_client(sd, http):
    url = sd.api_base_url + "/oauth2/token/revoke"
    assert http.post(url, auth=CLIENT, data={"token": "nope"}).json() == {}
    assert http.post(url, data={"token": "nope"}).status_code == 401


def test_client_credentials_is_the_owner_without_refresh_token(sd, http):
    resp = http.post(sd.api_base_url + "/oauth2/token", auth=CLIENT,
                     data={"grant_type": "client_credentials", "scope": "identify"})
    assert resp.status_code == 200
    body = resp.json()
    assert "refresh_token" not in body and body["scope"] == "identify" and body["token_type"] == "Bearer"
    assert get(sd, http, "/users/@me", body["access_token"]).json()["username"] == "standin_owner"
    form_only = http.post(sd.api_base_url + "/oauth2/token",
                          data={"grant_type": "client_credentials", "scope": "identify",
                                "client_id": CLIENT[0], "client_secret": CLIENT[1]})
    assert form_only.status_code == 401


def test_bot_token_checks(sd, http):
    me = get(sd, http, "/users/@me", DEFAULT_APP.bot_token, scheme="Bot").json()
    assert me["bot"] is True and me["id"] == DEFAULT_APP.bot_user_id
    app = get(sd, http, "/oauth2/applications/@me", DEFAULT_APP.bot_token, scheme="Bot").json()
    assert app["id"] == DEFAULT_APP.client_id and app["bot_public"] and app["bot_require_code_grant"]
    assert app["flags"] & (1 << 15) and app["redirect_uris"] == [REDIRECT] and app["bot"]["bot"] is True
    assert app["owner"]["id"] == sd.owner.id
    assert get(sd, http, "/users/@me", "wrong", scheme="Bot").status_code == 401
    assert get(sd, http, "/oauth2/applications/@me", "wrong", scheme="Bot").json()["message"] == "401: Unauthorized"
    sd.app.bot_public = False
    assert get(sd, http, "/oauth2/applications/@me", DEFAULT_APP.bot_token, scheme="Bot").json()["bot_public"] is False
    assert DEFAULT_APP.bot_public is True


def test_bad_client_secret_is_invalid_client(sd, http):
    code = click(sd, http)["code"]
    resp = exchange(sd, http, code, auth=(CLIENT[0], "wrong"))
    assert resp.status_code == 401 and resp.json() == {"error": "invalid_client"}
    assert exchange(sd, http, code).status_code == 200


def test_token_endpoint_refuses_json(sd, http):
    code = click(sd, http)["code"]
    resp = http.post(sd.api_base_url + "/oauth2/token", auth=CLIENT,
                     json={"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT})
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_request"
    unknown = http.post(sd.api_base_url + "/oauth2/token", auth=CLIENT, data={"grant_type": "password"})
    assert unknown.status_code == 400 and unknown.json()["error"] == "unsupported_grant_type"


def test_fail_next_is_one_shot(sd, http):
    body = tokens(sd, http)
    sd.fail_next("token", status=502)
    failed = refresh(sd, http, body["refresh_token"])
    assert failed.status_code == 502 and failed.json() == {"message": "502: Bad Gateway", "code": 0}
    assert refresh(sd, http, body["refresh_token"]).status_code == 200
    new = sd.grants[0].access_token
    sd.fail_next("users_me", status=401, count=2)
    assert [get(sd, http, "/users/@me", new).status_code for _ in range(3)] == [401, 401, 200]
    assert sd.count("users_me") == 3 and sd.count("token.refresh_token") == 2 and sd.count("token") == 3


def test_delay_next_makes_a_client_time_out(sd, http):
    sd.delay_next("token", seconds=0.6)
    code = click(sd, http)["code"]
    with pytest.raises(requests.Timeout):
        http.post(sd.api_base_url + "/oauth2/token", auth=CLIENT, timeout=0.2,
                  data={"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT})
    started = time.monotonic()
    assert get(sd, http, "/users/@me", DEFAULT_APP.bot_token, scheme="Bot").status_code == 200
    assert time.monotonic() - started < 0.5


def bot_me(sd, http):
    return get(sd, http, "/users/@me", DEFAULT_APP.bot_token, scheme="Bot")


def test_bucket_rate_limit_counts_down_in_fixed_windows_and_answers_429(sd, http):
    sd.rate_limit(per_second=5)
    answers = [bot_me(sd, http) for _ in range(8)]
    assert [r.status_code for r in answers] == [200] * 5 + [429] * 3
    assert [r.headers["X-RateLimit-Remaining"] for r in answers] == ["4", "3", "2", "1", "0", "0", "0", "0"]
    assert {r.headers["X-RateLimit-Limit"] for r in answers} == {"5"}
    assert {r.headers["X-RateLimit-Bucket"] for r in answers} == {bucket_of("users_me")}
    assert len({r.headers["X-RateLimit-Reset"] for r in answers}) == 1
    reset = float(answers[0].headers["X-RateLimit-Reset"])
    assert time.time() < reset <= time.time() + 1
    for resp in answers:
        assert THREE_DECIMALS.match(resp.headers["X-RateLimit-Reset"])
        assert THREE_DECIMALS.match(resp.headers["X-RateLimit-Reset-After"])
        assert 0 <= float(resp.headers["X-RateLimit-Reset-After"]) <= 1
    limited = answers[5]
    body = limited.json()
    assert body == {"message": "You are being rate limited.", "retry_after": body["retry_after"], "global": False}
    assert 0 < body["retry_after"] <= 1 and round(body["retry_after"], 3) == body["retry_after"]
    assert limited.headers["Retry-After"] == "1" and limited.headers["X-RateLimit-Scope"] == "user"
    assert "X-RateLimit-Global" not in limited.headers

    other_route = get(sd, http, "/oauth2/applications/@me", DEFAULT_APP.bot_token, scheme="Bot")
    assert other_route.status_code == 200 and other_route.headers["X-RateLimit-Remaining"] == "4"
    assert other_route.headers["X-RateLimit-Bucket"] == bucket_of("applications_me")

    time.sleep(body["retry_after"])
    again = bot_me(sd, http)
    assert again.status_code == 200 and again.headers["X-RateLimit-Remaining"] == "4"
    assert float(again.headers["X-RateLimit-Reset"]) >= reset + 0.001


def test_every_route_has_its_own_stable_bucket(sd, http):
    first = tokens(sd, http)
    seen = {
        "users_me": get(sd, http, "/users/@me", first["access_token"]),
        "guilds": get(sd, http, "/users/@me/guilds", first["access_token"]),
        "oauth2_me": get(sd, http, "/oauth2/@me", first["access_token"]),
        "token.refresh_token": refresh(sd, http, first["refresh_token"]),
        "token.client_credentials": http.post(sd.api_base_url + "/oauth2/token", auth=CLIENT,
                                              data={"grant_type": "client_credentials", "scope": "identify"}),
        "revoke": http.post(sd.api_base_url + "/oauth2/token/revoke", auth=CLIENT, data={"token": "x"}),
        "nope": http.get(sd.api_base_url + "/nope"),
        "nope2": http.post(sd.api_base_url + "/channels/1/pins"),
        "channel_messages": http.post(sd.api_base_url + "/channels/1/messages"),
        "guild_channels": http.get(sd.api_base_url + "/guilds/1/channels"),
    }
    buckets = {kind: resp.headers["X-RateLimit-Bucket"] for kind, resp in seen.items()}
    assert all(re.fullmatch(r"[0-9a-f]{16}", b) for b in buckets.values())
    assert buckets["token.refresh_token"] == buckets["token.client_credentials"] == bucket_of("token")
    assert buckets["nope"] == buckets["nope2"]
    distinct = [buckets[k] for k in ("users_me", "guilds", "oauth2_me", "token.refresh_token", "revoke", "nope",
                                     "channel_messages", "guild_channels")]
    assert len(set(distinct)) == len(distinct)
    with StandIn() as other:
        assert get(other, http, "/users/@me", "x").headers["X-RateLimit-Bucket"] == buckets["users_me"]
    # Without a limit nothing is refused, but the headers still count down, like a very large bucket.
    unlimited = [get(sd, http, "/users/@me", "same") for _ in range(3)]
    assert [r.headers["X-RateLimit-Limit"] for r in unlimited] == ["10000"] * 3
    assert [r.headers["X-RateLimit-Remaining"] for r in unlimited] == ["9999", "9998", "9997"]


def test_each_bearer_token_has_its_own_counter(sd, http):
    alice, bob = (sd.create_grant(sd.add_user(username=name, guilds=[]), "identify") for name in ("a", "b"))
    sd.rate_limit(per_second=2)
    assert [get(sd, http, "/users/@me", alice.access_token).status_code for _ in range(3)] == [200, 200, 429]
    bobs = [get(sd, http, "/users/@me", bob.access_token) for _ in range(3)]
    assert [r.status_code for r in bobs] == [200, 200, 429]
    assert [r.headers["X-RateLimit-Remaining"] for r in bobs] == ["1", "0", "0"]
    anonymous = http.get(sd.api_base_url + "/users/@me")
    assert anonymous.status_code == 401 and anonymous.headers["X-RateLimit-Remaining"] == "1"


def test_token_endpoint_with_basic_auth_shares_one_counter_and_refused_refreshes_do_nothing(sd, http):
    grants = [sd.create_grant(sd.add_user(username=f"u{i}", guilds=[])) for i in range(4)]
    sd.rate_limit(per_second=2)
    answers = [refresh(sd, http, g.refresh_token) for g in grants[:3]]
    assert [r.status_code for r in answers] == [200, 200, 429]
    assert answers[1].headers["X-RateLimit-Remaining"] == "0"
    limited = answers[2]
    assert limited.json()["global"] is False and limited.headers["X-RateLimit-Scope"] == "user"
    assert limited.headers["X-RateLimit-Bucket"] == bucket_of("token")
    assert limited.headers["X-RateLimit-Remaining"] == "0" and int(limited.headers["Retry-After"]) >= 1
    assert sd.refresh_token_valid(grants[2].refresh_token) and sd.access_token_valid(grants[2].access_token)
    assert sd.count("token.refresh_token") == 3 and sd.count_429("token") == 1

    # Client id and secret in the form: no Authorization header, so the (empty) credential's own counter.
    in_form = http.post(sd.api_base_url + "/oauth2/token",
                        data={"grant_type": "refresh_token", "refresh_token": grants[3].refresh_token,
                              "client_id": CLIENT[0], "client_secret": CLIENT[1]})
    assert in_form.status_code == 200 and in_form.headers["X-RateLimit-Remaining"] == "1"

    time.sleep(limited.json()["retry_after"])
    old = grants[2].refresh_token
    assert refresh(sd, http, old).status_code == 200
    assert not sd.refresh_token_valid(old)


def test_global_limit_answers_a_global_429_without_bucket_headers(http):
    with StandIn(global_limit=3) as sd:
        sd.rate_limit(per_second=10)
        first = [get(sd, http, path, token) for path, token in
                 (("/users/@me", "a"), ("/users/@me/guilds", "b"), ("/oauth2/@me", "c"))]
        assert [r.status_code for r in first] == [401] * 3
        limited = get(sd, http, "/users/@me", "d")
        assert limited.status_code == 429
        body = limited.json()
        assert body["global"] is True and body["message"] == "You are being rate limited."
        assert 0 < body["retry_after"] <= 1
        assert limited.headers["X-RateLimit-Global"] == "true" and limited.headers["X-RateLimit-Scope"] == "global"
        assert int(limited.headers["Retry-After"]) >= 1
        assert not any(name in limited.headers for name in BUCKET_HEADERS)
        assert sd.count("users_me") == 2 and sd.count_429() == 1

        sd.reset()
        assert sd.stats()["global_per_second"] == 3 and sd.stats()["per_second"] is None
        sd.global_limit(None)
        assert [get(sd, http, "/users/@me", "a").status_code for _ in range(5)] == [401] * 5


def test_global_limit_is_checked_before_the_buckets(sd, http):
    sd.rate_limit(per_second=1)
    sd.global_limit(per_second=2)
    statuses = [bot_me(sd, http) for _ in range(3)]
    assert [r.status_code for r in statuses] == [200, 429, 429]
    assert statuses[1].json()["global"] is False and statuses[2].json()["global"] is True
    sd.reset()
    assert [bot_me(sd, http).status_code for _ in range(3)] == [200] * 3


def test_rate_limit_lets_a_patient_client_through_at_the_rate(sd, http):
    sd.rate_limit(per_second=40)
    ok, deadline = 0, time.monotonic() + 1.5
    while time.monotonic() < deadline:
        resp = get(sd, http, "/users/@me", DEFAULT_APP.bot_token, scheme="Bot")
        if resp.status_code == 429:
            time.sleep(resp.json()["retry_after"])
        else:
            ok += 1
    assert 40 <= ok <= 80


def test_rate_limit_next_forces_429(sd, http):
    sd.rate_limit_next(count=1, retry_after=0.05)
    first = get(sd, http, "/users/@me", DEFAULT_APP.bot_token, scheme="Bot")
    assert first.status_code == 429 and first.json()["retry_after"] == 0.05
    assert get(sd, http, "/users/@me", DEFAULT_APP.bot_token, scheme="Bot").status_code == 200


def test_forced_429_scopes_and_bucket_headers(sd, http):
    sd.rate_limit(per_second=1)
    sd.rate_limit_next(retry_after=0.25)
    sd.rate_limit_next(retry_after=0.25, is_global=False)
    sd.rate_limit_next(retry_after=2.5, is_global=False, scope="shared")
    answers = [bot_me(sd, http) for _ in range(4)]
    assert [r.status_code for r in answers] == [429, 429, 429, 200]
    global_one, user_one, shared_one = answers[:3]
    assert global_one.json() == {"message": "You are being rate limited.", "retry_after": 0.25, "global": True}
    assert global_one.headers["X-RateLimit-Scope"] == "global" and global_one.headers["X-RateLimit-Global"] == "true"
    assert not any(name in global_one.headers for name in BUCKET_HEADERS)
    assert user_one.json()["global"] is False and user_one.headers["X-RateLimit-Scope"] == "user"
    assert user_one.headers["X-RateLimit-Bucket"] == bucket_of("users_me")
    assert user_one.headers["X-RateLimit-Remaining"] == "0" and user_one.headers["X-RateLimit-Reset-After"] == "0.250"
    assert user_one.headers["Retry-After"] == "1" and "X-RateLimit-Global" not in user_one.headers
    assert shared_one.headers["X-RateLimit-Scope"] == "shared" and shared_one.headers["Retry-After"] == "3"
    assert shared_one.headers["X-RateLimit-Reset-After"] == "2.500" and shared_one.json()["retry_after"] == 2.5
    # Forced answers use up no window: the request after them is the bucket's first.
    assert answers[3].headers["X-RateLimit-Remaining"] == "0"
    with pytest.raises(ValueError):
        sd.rate_limit_next(scope="everyone")


def test_count_429_and_stats(sd, http):
    sd.rate_limit(per_second=1)
    grant = sd.create_grant(sd.owner, "identify")
    access, refresh_token = grant.access_token, grant.refresh_token
    for _ in range(3):
        get(sd, http, "/users/@me", access)
        refresh(sd, http, refresh_token)
    http.get(sd.api_base_url + "/nope")
    http.get(sd.api_base_url + "/nope")
    sd.fail_next("guilds", status=429)
    get(sd, http, "/users/@me/guilds", "t")
    assert sd.count("users_me") == 3 and sd.count("token.refresh_token") == 3
    assert sd.count_429("users_me") == 2 and sd.count_429("token") == 2 and sd.count_429("token.refresh_token") == 2
    assert sd.count_429("token.authorization_code") == 0 and sd.count_429("guilds") == 1
    assert sd.count_429() == 6
    stats = sd.stats()
    assert stats["rate_limited"] == 6 and stats["per_second"] == 1 and stats["global_per_second"] is None
    assert stats["rate_limited_counts"]["users_me"] == 2 and stats["rate_limited_counts"]["token.refresh_token"] == 2
    assert stats["rate_limited_counts"]["guilds"] == 1 and stats["rate_limited_counts"]["revoke"] == 0
    assert http.get(sd.base_url + "/_standin/stats").json()["rate_limited"] == 6
    sd.reset()
    assert sd.count_429() == 0 and sd.stats()["rate_limited_counts"]["users_me"] == 0


def test_delay_answer_next_rotates_the_tokens_though_the_client_timed_out(sd, http):
    first = tokens(sd, http)
    sd.delay_answer_next("token.refresh_token", seconds=0.6)
    with pytest.raises(requests.Timeout):
        refresh(sd, http, first["refresh_token"], timeout=0.2)
    assert not sd.refresh_token_valid(first["refresh_token"]) and not sd.access_token_valid(first["access_token"])
    [grant] = sd.grants
    assert grant.refresh_token != first["refresh_token"] and sd.refresh_token_valid(grant.refresh_token)
    assert sd.access_token_valid(grant.access_token)
    retry = refresh(sd, http, first["refresh_token"])
    assert retry.status_code == 400 and retry.json()["error"] == "invalid_grant"

    # A patient client gets the answer, late, with the tokens that are already live.
    sd.delay_answer_next("token", seconds=0.3)
    started = time.monotonic()
    late = refresh(sd, http, grant.refresh_token)
    assert time.monotonic() - started >= 0.3
    assert late.status_code == 200 and late.json()["refresh_token"] == sd.grants[0].refresh_token
    started = time.monotonic()
    assert refresh(sd, http, sd.grants[0].refresh_token).status_code == 200
    assert time.monotonic() - started < 0.25


def test_control_rate_limits_and_delay_answer_next(sd, http):
    ctl = sd.base_url + "/_standin"
    both = http.post(ctl + "/rate_limit", json={"per_second": 7, "global_per_second": 50})
    assert both.status_code == 200 and both.json() == {"per_second": 7, "global_per_second": 50}
    only_global = http.post(ctl + "/rate_limit", json={"global_per_second": None}).json()
    assert only_global == {"per_second": 7, "global_per_second": None}
    assert http.post(ctl + "/rate_limit", json={"per_second": None}).json()["per_second"] is None
    assert http.post(ctl + "/rate_limit", json={"per_second": 2}).json()["per_second"] == 2
    assert http.post(ctl + "/rate_limit", json={"perSecond": 2}).status_code == 400
    assert http.post(ctl + "/rate_limit", json={"per_second": -1}).status_code == 400
    assert http.post(ctl + "/rate_limit", json={}).json() == {"per_second": 2, "global_per_second": None}
    assert bot_me(sd, http).headers["X-RateLimit-Limit"] == "2"

    body = tokens(sd, http)
    assert http.post(ctl + "/delay_answer_next",
                     json={"kind": "token.refresh_token", "seconds": 0.5}).status_code == 200
    with pytest.raises(requests.Timeout):
        refresh(sd, http, body["refresh_token"], timeout=0.15)
    assert not sd.refresh_token_valid(body["refresh_token"])
    assert http.post(ctl + "/delay_answer_next", json={"seconds": 1}).status_code == 400


def test_cancel_redirects_with_access_denied_and_state(sd, http):
    resp = http.get(sd.base_url + "/oauth2/authorize/_approve", allow_redirects=False,
                    params={**authorize_query(), "action": "cancel"})
    location = resp.headers["Location"]
    assert location.startswith(REDIRECT + "?error=access_denied&error_description=The+resource+owner")
    assert parse_qs(urlsplit(location).query)["state"] == ["st4te"]
    page = http.get(sd.authorize_url, params=authorize_query())
    posted = http.post(sd.authorize_url, data={**read_form(page.text).fields, "action": "cancel"},
                       allow_redirects=False)
    assert parse_qs(urlsplit(posted.headers["Location"]).query)["error"] == ["access_denied"]


@pytest.mark.parametrize(
    "bad",
    [
        {"redirect_uri": "http://evil.test/auth/discord/callback"},
        {"redirect_uri": REDIRECT + "/"},
        {"redirect_uri": None},
        {"client_id": "1"},
        {"response_type": "token"},
        {"scope": "identify nonsense"},
    ],
)
def test_bad_authorize_requests_never_redirect(sd, http, bad):
    page = http.get(sd.authorize_url, params=authorize_query(**bad), allow_redirects=False)
    assert page.status_code == 400 and "Location" not in page.headers
    assert page.headers["Content-Type"].startswith("text/html")
    approve = http.get(sd.base_url + "/oauth2/authorize/_approve", allow_redirects=False,
                       params={**authorize_query(**bad), "action": "authorize"})
    assert approve.status_code == 400 and "Location" not in approve.headers


def test_consent_page_escapes_what_it_echoes(sd, http):
    evil = '"><script>alert(1)</script>'
    sd.login(sd.add_user(username="bob", global_name=evil))
    page = http.get(sd.authorize_url, params=authorize_query(state=evil)).text
    assert "<script>" not in page
    assert read_form(page).fields["state"] == evil


def test_any_redirect_is_accepted_when_none_is_registered(http):
    with StandIn() as sd:
        back = click(sd, http, redirect_uri="http://localhost:9999/cb")
        assert exchange(sd, http, back["code"], redirect_uri="http://localhost:9999/cb").status_code == 200


def test_concurrent_refreshes_of_one_token_let_exactly_one_win(sd, http):
    token = tokens(sd, http)["refresh_token"]
    barrier = threading.Barrier(8)
    results: list[requests.Response] = []

    def race() -> None:
        with requests.Session() as own:
            barrier.wait()
            results.append(refresh(sd, own, token))

    threads = [threading.Thread(target=race) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    statuses = sorted(r.status_code for r in results)
    assert statuses == [200] + [400] * 7
    assert all(r.json()["error"] == "invalid_grant" for r in results if r.status_code == 400)
    assert sd.count("token.refresh_token") == 8


def test_every_api_answer_is_json_with_rate_limit_headers(sd, http):
    missing = http.get(sd.api_base_url + "/nope")
    assert missing.status_code == 404 and missing.json() == {"message": "404: Not Found", "code": 0}
    wrong_method = http.delete(sd.api_base_url + "/users/@me")
    assert wrong_method.status_code == 405 and wrong_method.headers["Content-Type"] == "application/json"
    for resp in (missing, wrong_method):
        for name in ("Limit", "Remaining", "Reset", "Reset-After", "Bucket"):
            assert f"X-RateLimit-{name}" in resp.headers


def test_calls_record_method_path_and_grant_type(sd, http):
    body = tokens(sd, http)
    refresh(sd, http, body["refresh_token"])
    assert sd.calls == [
        ("GET", "/oauth2/authorize/_approve", None),
        ("POST", "/api/v10/oauth2/token", "authorization_code"),
        ("POST", "/api/v10/oauth2/token", "refresh_token"),
    ]
    assert sd.count("authorize") == 1
    sd.reset()
    assert sd.calls == [] and sd.grants == [] and sd.count("authorize") == 0


def test_prompt_none_skips_consent_only_for_repeats(sd, http):
    assert http.get(sd.authorize_url, params=authorize_query(prompt="none")).status_code == 200
    tokens(sd, http)
    repeat = http.get(sd.authorize_url, params=authorize_query(prompt="none"), allow_redirects=False)
    assert repeat.status_code == 302 and "code=" in repeat.headers["Location"]
    bot = http.get(sd.authorize_url, params=authorize_query(prompt="none", scope="bot"), allow_redirects=False)
    assert bot.status_code == 200


def test_expired_access_token_is_refused_but_refresh_still_works(sd, http):
    body = tokens(sd, http)
    sd.grants[0].expires_at = time.time() - 1
    assert get(sd, http, "/users/@me", body["access_token"]).status_code == 401
    assert refresh(sd, http, body["refresh_token"]).status_code == 200


def test_control_api(sd, http):
    ctl = sd.base_url + "/_standin"
    user = http.post(ctl + "/users", json={"username": "carol", "guilds": [{"name": "Carol's"}]}).json()
    assert user["username"] == "carol" and user["guilds"][0]["name"] == "Carol's"
    assert http.post(ctl + "/login", json={"user_id": user["id"]}).status_code == 200
    assert click(sd, http, scope="bot")["guild_id"] == user["guilds"][0]["id"]

    seeded = http.post(ctl + "/grants", json={"scopes": "identify", "expires_in": 60, "count": 3}).json()
    assert len(seeded) == 3 and len({s["user_id"] for s in seeded}) == 3
    assert 59 <= seeded[0]["expires_in"] <= 60
    me = get(sd, http, "/users/@me", seeded[0]["access_token"]).json()
    assert me["id"] == seeded[0]["user_id"]

    http.post(ctl + "/fail_next", json={"kind": "users_me", "status": 503, "count": 1})
    assert get(sd, http, "/users/@me", seeded[0]["access_token"]).status_code == 503
    http.post(ctl + "/rate_limit", json={"per_second": 1})
    get(sd, http, "/users/@me", seeded[0]["access_token"])
    assert get(sd, http, "/users/@me", seeded[0]["access_token"]).status_code == 429
    stats = http.get(ctl + "/stats").json()
    assert stats["live_grants"] == 3 and stats["counts"]["users_me"] == 4 and stats["counts"]["authorize"] == 1
    assert http.post(ctl + "/rate_limit", json={"per_second": None}).status_code == 200
    assert http.post(ctl + "/login", json={"user_id": "404"}).status_code == 400

    http.post(ctl + "/reset")
    assert http.get(ctl + "/stats").json()["live_grants"] == 0
    assert get(sd, http, "/users/@me", seeded[0]["access_token"]).status_code == 401


def test_stop_ends_keep_alive_connections(http):
    sd = StandIn().start()
    url = sd.api_base_url + "/users/@me"
    assert http.get(url).status_code == 401
    sd.stop()
    with pytest.raises(requests.ConnectionError):
        http.get(url, timeout=2)


def test_clear_faults_drops_every_queued_fault(sd, http):
    first = tokens(sd, http)
    sd.fail_next("token", status=500, count=3)
    sd.delay_next("token", seconds=5, count=3)
    sd.delay_answer_next("token", seconds=5, count=3)
    sd.rate_limit_next(count=3)

    assert http.post(sd.base_url + "/_standin/clear_faults", json={}).status_code == 200

    started = time.monotonic()
    assert refresh(sd, http, first["refresh_token"]).status_code == 200
    assert time.monotonic() - started < 1


def test_the_consent_page_reads_like_one_and_says_it_is_not_discord(sd, http):
    page = http.get(sd.authorize_url, params=authorize_query(scope="identify bot")).text

    assert "This is not Discord." in page
    assert f"{sd.app.name}</strong> wants to access your account" in page
    assert "Access your username, avatar, and banner" in page and "Add a bot to a server" in page
    assert '<select id="guild_id" name="guild_id">' in page
    assert 'value="authorize">Authorize</button>' in page and 'value="cancel">Cancel</button>' in page


@pytest.mark.parametrize("path", ["/avatars/100000000000000003/a1b2c3.png", "/embed/avatars/3.png"])
def test_avatars_are_served_as_the_cdn_serves_them(sd, http, path):
    answer = http.get(sd.base_url + path)

    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "image/png"
    assert answer.content.startswith(b"\x89PNG\r\n\x1a\n")
    assert http.get(sd.base_url + "/avatars/nothing-here").status_code == 404
