"""With a state path the stand-ins keep their people, grants and keys across restarts, as `make run` needs;
without one (what tests use) nothing is written anywhere."""

from __future__ import annotations

import json
import logging
import threading
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from standin import discord, slack
from standin.discord.__main__ import parse_args as discord_args
from standin.persist import FORMAT_VERSION, StateFile
from standin.slack.__main__ import parse_args as slack_args

DISCORD_REDIRECT = "http://app.test/auth/discord/callback"
SLACK_REDIRECT = "http://app.test/auth/slack/callback"
DISCORD_CLIENT = (discord.DEFAULT_APP.client_id, discord.DEFAULT_APP.client_secret)
SLACK_CLIENT = (slack.DEFAULT_APP.client_id, slack.DEFAULT_APP.client_secret)


@pytest.fixture
def path(tmp_path):
    return tmp_path / ".standin" / "state.json"


@pytest.fixture
def http():
    with requests.Session() as session:
        yield session


def redirect_query(answer):
    assert answer.status_code == 302, answer.text
    return {k: v[0] for k, v in parse_qs(urlsplit(answer.headers["Location"]).query).items()}


def discord_consent(sd, http, scope="identify email guilds"):
    """A person consents through the stand-in's approve shortcut and the app exchanges the code: the tokens."""
    code = redirect_query(http.get(sd.authorize_url + "/_approve", allow_redirects=False, params={
        "client_id": sd.app.client_id, "response_type": "code", "redirect_uri": DISCORD_REDIRECT,
        "scope": scope, "action": "authorize"}))["code"]
    answer = http.post(sd.api_base_url + "/oauth2/token", auth=DISCORD_CLIENT,
                       data={"grant_type": "authorization_code", "code": code, "redirect_uri": DISCORD_REDIRECT})
    assert answer.status_code == 200, answer.text
    return answer.json()


def discord_refresh(sd, http, token):
    return http.post(sd.api_base_url + "/oauth2/token", auth=DISCORD_CLIENT,
                     data={"grant_type": "refresh_token", "refresh_token": token})


def discord_revoke(sd, http, token):
    answer = http.post(sd.api_base_url + "/oauth2/token/revoke", auth=DISCORD_CLIENT, data={"token": token})
    assert answer.status_code == 200


def users_me(sd, http, token):
    return http.get(sd.api_base_url + "/users/@me", headers={"Authorization": f"Bearer {token}"})


def slack_install(sd, http, **extra):
    code = redirect_query(http.get(sd.authorize_url + "/_approve", allow_redirects=False, params={
        "client_id": sd.app.client_id, "scope": "chat:write,channels:read", "redirect_uri": SLACK_REDIRECT,
        "action": "authorize", **extra}))["code"]
    return slack_access(sd, http, code=code, redirect_uri=SLACK_REDIRECT)


def slack_access(sd, http, **data):
    return http.post(sd.api_base_url + "/oauth.v2.access", auth=SLACK_CLIENT, data=data).json()


def auth_test(sd, http, token):
    return http.post(sd.api_base_url + "/auth.test", headers={"Authorization": f"Bearer {token}"}).json()


# Discord


def test_discord_grants_users_and_the_events_key_outlive_a_restart(path, http):
    with discord.StandIn(redirect_uris=[DISCORD_REDIRECT], state_path=path) as sd:
        alice = sd.add_user(username="alice", global_name="Alice", guilds=["Alice's lab"])
        sd.login(alice)
        kept = discord_consent(sd, http, scope="identify guilds")
        revoked = discord_consent(sd, http)
        discord_revoke(sd, http, revoked["refresh_token"])
        expired = sd.create_grant(alice, "identify", expires_in=-60)
        verify_key = sd.app.verify_key
        guild_id = alice.guilds[0].id
    assert path.exists()

    with discord.StandIn(redirect_uris=[DISCORD_REDIRECT], state_path=path) as again:
        assert again.app.verify_key == verify_key
        assert again.logged_in.id == alice.id
        assert [g.id for g in again.user(alice.id).guilds] == [guild_id]
        assert again.access_token_valid(kept["access_token"])
        me = users_me(again, http, kept["access_token"])
        assert me.status_code == 200 and me.json()["id"] == alice.id
        guilds = http.get(again.api_base_url + "/users/@me/guilds",
                          headers={"Authorization": f"Bearer {kept['access_token']}"}).json()
        assert [g["name"] for g in guilds] == ["Alice's lab"]

        refreshed = discord_refresh(again, http, kept["refresh_token"])
        assert refreshed.status_code == 200, refreshed.text
        assert refreshed.json()["scope"] == "identify guilds"
        assert not again.access_token_valid(kept["access_token"])

        assert not again.access_token_valid(revoked["access_token"])
        assert discord_refresh(again, http, revoked["refresh_token"]).json()["error"] == "invalid_grant"
        assert users_me(again, http, revoked["access_token"]).status_code == 401

        # Expired before the restart: its access token is dead, its refresh token still refreshes.
        assert not again.access_token_valid(expired.access_token)
        renewed = discord_refresh(again, http, expired.refresh_token)
        assert renewed.status_code == 200 and renewed.json()["expires_in"] > 0
        rotated = refreshed.json()

    # The rotation was kept too: the tokens the refresh answered are the ones that work now.
    with discord.StandIn(redirect_uris=[DISCORD_REDIRECT], state_path=path) as third:
        assert third.access_token_valid(rotated["access_token"])
        assert not third.refresh_token_valid(kept["refresh_token"])
        assert discord_refresh(third, http, rotated["refresh_token"]).status_code == 200
        assert len(third.grants) == 2


def test_discord_keeps_bot_installs_and_what_the_bot_posted(path, http):
    with discord.StandIn(redirect_uris=[DISCORD_REDIRECT], state_path=path) as sd:
        body = discord_consent(sd, http, scope="identify bot")
        guild_id = body["guild"]["id"]
        general = next(c for c in sd.channels(guild_id) if c.name == "general")
        bot = {"Authorization": f"Bot {sd.app.bot_token}"}
        posted = http.post(f"{sd.api_base_url}/channels/{general.id}/messages", headers=bot, json={"content": "hi"})
        assert posted.status_code == 200
        sd.deny_send(next(c for c in sd.channels(guild_id) if c.name == "announcements").id)

    with discord.StandIn(state_path=path) as again:
        answer = http.get(f"{again.api_base_url}/guilds/{guild_id}/channels", headers=bot)
        assert answer.status_code == 200
        assert [m["content"] for m in again.messages(general.id)] == ["hi"]
        assert [c.name for c in again.channels(guild_id) if not c.can_send] == ["announcements"]
        # The registered redirect came from the file, as no argument named one.
        assert again.app.redirect_uris == [DISCORD_REDIRECT]


def test_what_the_arguments_name_wins_over_the_file(path):
    with discord.StandIn(redirect_uris=["http://old.test/cb"], state_path=path) as sd:
        sd.add_user(username="bob")
    seed = bytes(range(32))
    again = discord.StandIn(redirect_uris=[DISCORD_REDIRECT], signing_seed=seed, state_path=path)
    assert again.app.redirect_uris == [DISCORD_REDIRECT]
    assert again.app.verify_key == discord.StandIn(signing_seed=seed).app.verify_key
    assert any(user.username == "bob" for user in again._users.values())


def test_a_grant_for_someone_made_without_add_user_is_kept_with_them(path):
    sd = discord.StandIn(state_path=path)
    grant = sd.create_grant(discord.User("4242", "ghost"), "identify")
    again = discord.StandIn(state_path=path)
    assert again.access_token_valid(grant.access_token) and again.user("4242").username == "ghost"


def test_reset_forgets_what_was_kept(path, http):
    with discord.StandIn(redirect_uris=[DISCORD_REDIRECT], state_path=path) as sd:
        body = discord_consent(sd, http)
        http.post(sd.base_url + "/_standin/reset").raise_for_status()
    with discord.StandIn(state_path=path) as again:
        assert again.grants == [] and not again.access_token_valid(body["access_token"])


# Slack


def test_slack_tokens_workspaces_and_rotation_outlive_a_restart(path, http):
    with slack.StandIn(redirect_uris=[SLACK_REDIRECT], token_rotation=True, state_path=path) as sd:
        team = sd.add_workspace(name="Acme")
        bob = sd.add_user(name="bob", real_name="Bob", workspaces=[team])
        sd.login(bob)
        kept = slack_install(sd, http, user_scope="search:read")
        revoked = slack_install(sd, http)
        answer = http.post(sd.api_base_url + "/auth.revoke",
                           headers={"Authorization": f"Bearer {revoked['access_token']}"})
        assert answer.json() == {"ok": True, "revoked": True}
        bot_user_id = kept["bot_user_id"]

    with slack.StandIn(redirect_uris=[SLACK_REDIRECT], state_path=path) as again:
        assert again.app.token_rotation is True
        assert again.logged_in.id == bob.id and again.workspace(team.id).bot_user_id == bot_user_id
        assert again.access_token_valid(kept["access_token"])
        tested = auth_test(again, http, kept["access_token"])
        assert tested["ok"] and tested["team_id"] == team.id and tested["user_id"] == bot_user_id
        person = auth_test(again, http, kept["authed_user"]["access_token"])
        assert person["ok"] and person["user_id"] == bob.id

        new = slack_access(again, http, grant_type="refresh_token", refresh_token=kept["refresh_token"])
        assert new["ok"] and new["access_token"] != kept["access_token"]
        assert auth_test(again, http, kept["access_token"]) == {"ok": False, "error": "invalid_auth"}

        assert not again.access_token_valid(revoked["access_token"])
        assert auth_test(again, http, revoked["access_token"]) == {"ok": False, "error": "invalid_auth"}
        assert slack_access(again, http, grant_type="refresh_token", refresh_token=revoked["refresh_token"]) == {
            "ok": False, "error": "invalid_refresh_token"}

    with slack.StandIn(state_path=path) as third:
        assert third.access_token_valid(new["access_token"]) and third.refresh_token_valid(new["refresh_token"])
        assert not third.refresh_token_valid(kept["refresh_token"])


def test_slack_tokens_past_their_lifetime_still_refresh_after_a_restart(path, http):
    with slack.StandIn(redirect_uris=[SLACK_REDIRECT], token_rotation=True, state_path=path) as sd:
        body = slack_install(sd, http)
        sd.grants[0].expires_at = 0
        sd._changed()
    with slack.StandIn(state_path=path) as again:
        assert auth_test(again, http, body["access_token"]) == {"ok": False, "error": "token_expired"}
        new = slack_access(again, http, grant_type="refresh_token", refresh_token=body["refresh_token"])
        assert new["ok"] and auth_test(again, http, new["access_token"])["ok"]


def test_slack_without_rotation_keeps_its_tokens_that_never_expire(path, http):
    with slack.StandIn(redirect_uris=[SLACK_REDIRECT], state_path=path) as sd:
        body = slack_install(sd, http)
    with slack.StandIn(state_path=path) as again:
        assert again.app.token_rotation is False
        assert auth_test(again, http, body["access_token"])["ok"]


# one file, both providers


def test_both_stand_ins_share_one_file_a_section_each(path, http):
    sd = discord.StandIn(redirect_uris=[DISCORD_REDIRECT], state_path=path).start()
    ss = slack.StandIn(redirect_uris=[SLACK_REDIRECT], state_path=path).start()
    try:
        made = {"discord": [], "slack": []}

        def on_discord():
            for _ in range(10):
                made["discord"].append(discord_consent(sd, requests)["access_token"])

        def on_slack():
            for _ in range(10):
                made["slack"].append(slack_install(ss, requests)["access_token"])

        threads = [threading.Thread(target=on_discord), threading.Thread(target=on_slack)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        sd.stop()
        ss.stop()

    saved = json.loads(path.read_text())
    assert set(saved) == {"version", "discord", "slack"} and saved["version"] == FORMAT_VERSION
    # Only the file and its lock: every temporary file was put in place or removed.
    assert sorted(p.name for p in path.parent.iterdir()) == ["state.json", "state.json.lock"]
    again_discord, again_slack = discord.StandIn(state_path=path), slack.StandIn(state_path=path)
    assert all(again_discord.access_token_valid(token) for token in made["discord"]) and len(made["discord"]) == 10
    assert all(again_slack.access_token_valid(token) for token in made["slack"]) and len(made["slack"]) == 10


# what cannot be read


@pytest.mark.parametrize("content, why", [
    ("{not json", "it is not JSON"),
    ('["a list"]', "it is not a JSON object"),
    ('{"discord": {}, "slack": {}}', "its format is version None, not 1"),
    ('{"version": 1, "discord": {"users": 5}, "slack": []}', "section"),
])
def test_a_file_it_cannot_read_is_logged_and_the_stand_in_starts_afresh(path, http, caplog, content, why):
    path.parent.mkdir(parents=True)
    path.write_text(content)
    caplog.set_level(logging.WARNING, logger="standin")
    sd = discord.StandIn(redirect_uris=[DISCORD_REDIRECT], state_path=path)
    ss = slack.StandIn(state_path=path)
    warnings = [r.getMessage() for r in caplog.records if r.name == "standin"]
    assert len(warnings) == 2
    assert warnings[0].startswith(f"Discord stand-in: ignored the state saved in {path}, as ")
    assert why in warnings[0] and "starts afresh" in warnings[0]
    assert warnings[1].startswith("Slack stand-in: ignored the state saved in ")
    # Fresh: the stand-ins' own people, no grants, and the file untouched until something changes.
    assert sd.grants == [] and sd.logged_in.username == "standin_user"
    assert ss.grants == [] and ss.logged_in.id == "U0STANDIN01"
    assert path.read_text() == content

    with sd:
        body = discord_consent(sd, http)
    assert discord.StandIn(state_path=path).access_token_valid(body["access_token"])


def test_a_broken_section_leaves_the_other_providers_section_alone(path, http):
    with slack.StandIn(redirect_uris=[SLACK_REDIRECT], state_path=path) as ss:
        body = slack_install(ss, http)
    saved = json.loads(path.read_text())
    saved["discord"] = {"users": "not a list"}
    path.write_text(json.dumps(saved))
    assert discord.StandIn(state_path=path).grants == []
    assert slack.StandIn(state_path=path).access_token_valid(body["access_token"])


def test_a_save_that_fails_is_logged_and_the_request_still_answered(tmp_path, http, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    caplog.set_level(logging.WARNING, logger="standin")
    with discord.StandIn(redirect_uris=[DISCORD_REDIRECT], state_path=blocker / "state.json") as sd:
        body = discord_consent(sd, http)
    assert sd.access_token_valid(body["access_token"])
    assert any("could not save its state" in r.getMessage() for r in caplog.records)


# memory only


def test_without_a_path_nothing_is_written_anywhere(tmp_path, monkeypatch, http):
    monkeypatch.chdir(tmp_path)
    with discord.StandIn(redirect_uris=[DISCORD_REDIRECT]) as sd, slack.StandIn(redirect_uris=[SLACK_REDIRECT]) as ss:
        assert sd.state_path is None and ss.state_path is None
        body = discord_consent(sd, http)
        assert discord_refresh(sd, http, body["refresh_token"]).status_code == 200
        slack_install(ss, http)
        sd.add_user(username="carol")
    assert list(tmp_path.iterdir()) == []


def test_state_file_reads_none_before_anything_was_saved(path):
    assert StateFile(path).read("discord") is None
    StateFile(path).write("slack", {"x": 1})
    assert StateFile(path).read("discord") is None and StateFile(path).read("slack") == {"x": 1}


def test_python_m_takes_a_state_path_and_keeps_memory_by_default():
    assert discord_args([]).state is None and slack_args([]).state is None
    assert discord_args(["--state", "s.json"]).state == "s.json"
    assert slack_args(["--state", "s.json"]).state == "s.json"
