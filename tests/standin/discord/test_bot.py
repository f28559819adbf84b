"""The bot routes of the Discord stand-in: a server's channels and the messages the bot posts, with Discord's
refusals, so that the Backoffice's test message meets what it would meet at Discord."""

import pytest
import requests

from standin.discord import StandIn
from standin.discord.ratelimit import bucket_of
from tests.helpers import standin_tokens

SERVER = "100000000000000004"  # the default user's server


@pytest.fixture
def sd():
    with StandIn() as standin:
        yield standin


@pytest.fixture
def bot_added(sd):
    """The default user adds the bot to their server through the code grant; the server's text channel's id."""
    standin_tokens(sd, guild_id=SERVER)
    return next(c.id for c in sd.channels(SERVER) if c.name == "general")


def as_bot(sd, token=None):
    return {"Authorization": f"Bot {token or sd.app.bot_token}"}


def channels(sd, guild_id=SERVER, **headers):
    return requests.get(f"{sd.api_base_url}/guilds/{guild_id}/channels", headers=headers or as_bot(sd), timeout=5)


def post(sd, channel_id, body=None, **headers):
    return requests.post(f"{sd.api_base_url}/channels/{channel_id}/messages", json=body,
                         headers=headers or as_bot(sd), timeout=5)


def refusal(answer):
    return answer.status_code, answer.json()["code"]


def test_a_server_the_bot_joined_lists_discords_default_channels(sd, bot_added):
    listed = channels(sd)
    assert listed.status_code == 200
    by_name = {c["name"]: c for c in listed.json()}
    assert {name: c["type"] for name, c in by_name.items()} == {
        "Channels": 4, "general": 0, "announcements": 5, "General": 2,
    }
    category = by_name["Channels"]["id"]
    assert category.isdigit() and by_name["Channels"]["parent_id"] is None
    assert [by_name[n]["parent_id"] for n in ("general", "announcements", "General")] == [category] * 3
    assert [by_name[n]["position"] for n in ("general", "announcements", "General")] == [0, 1, 2]
    assert all(c["guild_id"] == SERVER for c in listed.json())


def test_channels_need_the_bot_token_a_known_server_and_the_bot_in_it(sd):
    assert channels(sd).json() == {"message": "Missing Access", "code": 50001}
    assert refusal(channels(sd)) == (403, 50001)
    assert refusal(channels(sd, "1")) == (404, 10004)
    assert channels(sd, Authorization="Bot wrong").status_code == 401
    bearer = standin_tokens(sd, scope="identify guilds")["access_token"]
    assert channels(sd, Authorization=f"Bearer {bearer}").status_code == 401


def test_the_bot_posts_a_message_the_stand_in_keeps(sd, bot_added):
    answer = post(sd, bot_added, {"content": "Hello from the tests"})
    assert answer.status_code == 200
    message = answer.json()
    assert message["content"] == "Hello from the tests" and message["channel_id"] == bot_added
    assert message["author"]["id"] == sd.app.bot_user_id and message["author"]["bot"] is True
    assert message["id"].isdigit() and message["timestamp"]
    assert sd.messages(bot_added) == [message]
    kept = requests.get(f"{sd.base_url}/_standin/messages", params={"channel_id": bot_added}, timeout=5)
    assert kept.json() == [message]
    general = next(c for c in channels(sd).json() if c["id"] == bot_added)
    assert general["last_message_id"] == message["id"]


@pytest.mark.parametrize("body", [None, {}, {"content": ""}, {"content": "x" * 2001}, {"content": 7}])
def test_a_message_needs_content_of_1_to_2000_characters(sd, bot_added, body):
    answer = post(sd, bot_added, body)
    assert refusal(answer) == (400, 50035)
    assert answer.json()["message"] == "Invalid Form Body" and "content" in answer.json()["errors"]
    assert sd.messages(bot_added) == []
    assert post(sd, bot_added, {"content": "x" * 2000}).status_code == 200


def test_refusals_for_unknown_channels_categories_and_other_tokens(sd, bot_added):
    category = next(c.id for c in sd.channels(SERVER) if c.type == 4)
    assert refusal(post(sd, "1", {"content": "hi"})) == (404, 10003)
    assert refusal(post(sd, category, {"content": "hi"})) == (400, 50008)
    assert post(sd, bot_added, {"content": "hi"}, Authorization="Bot wrong").status_code == 401


def test_after_remove_bot_every_route_of_that_server_answers_missing_access(sd, bot_added):
    assert post(sd, bot_added, {"content": "before"}).status_code == 200
    sd.remove_bot(SERVER)
    assert refusal(channels(sd)) == (403, 50001)
    assert refusal(post(sd, bot_added, {"content": "after"})) == (403, 50001)
    assert [m["content"] for m in sd.messages(bot_added)] == ["before"]


def test_a_channel_denied_send_answers_missing_permissions_and_the_others_still_work(sd, bot_added):
    announcements = next(c.id for c in sd.channels(SERVER) if c.name == "announcements")
    sd.deny_send(bot_added)
    assert refusal(post(sd, bot_added, {"content": "hi"})) == (403, 50013)
    assert post(sd, announcements, {"content": "hi"}).status_code == 200


def test_control_routes_remove_the_bot_and_deny_send(sd, bot_added):
    ctl = f"{sd.base_url}/_standin"
    announcements = next(c.id for c in sd.channels(SERVER) if c.name == "announcements")
    assert requests.post(f"{ctl}/deny_send", json={"channel_id": announcements}, timeout=5).status_code == 200
    assert refusal(post(sd, announcements, {"content": "hi"})) == (403, 50013)
    assert requests.post(f"{ctl}/remove_bot", json={"guild_id": SERVER}, timeout=5).status_code == 200
    assert refusal(channels(sd)) == (403, 50001)
    assert requests.post(f"{ctl}/remove_bot", json={"guild_id": "1"}, timeout=5).status_code == 400
    assert requests.post(f"{ctl}/deny_send", json={}, timeout=5).status_code == 400


def test_each_channel_has_its_own_rate_limit_counter_under_one_bucket(sd, bot_added):
    announcements = next(c.id for c in sd.channels(SERVER) if c.name == "announcements")
    sd.rate_limit(per_second=1)
    first = post(sd, bot_added, {"content": "one"})
    assert first.status_code == 200 and first.headers["X-RateLimit-Remaining"] == "0"
    limited = post(sd, bot_added, {"content": "two"})
    assert limited.status_code == 429 and limited.json()["global"] is False
    other = post(sd, announcements, {"content": "one"})
    assert other.status_code == 200
    assert {first.headers["X-RateLimit-Bucket"], other.headers["X-RateLimit-Bucket"]} == {
        bucket_of("channel_messages")
    }
    assert [m["content"] for m in sd.messages(bot_added)] == ["one"]
    assert sd.count("channel_messages") == 3 and sd.count_429("channel_messages") == 1
    # The channel list is a bucket of its own, counted per server.
    assert channels(sd).headers["X-RateLimit-Bucket"] == bucket_of("guild_channels")
