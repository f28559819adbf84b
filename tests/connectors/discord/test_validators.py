"""What an operator may paste, and what is refused with a reason."""

import pytest
from django.core.exceptions import ValidationError

from connectors.registry import registry

discord = registry.get("appmixer:discord")


def normalise(key, raw):
    return discord.field(key).normalise(raw)


@pytest.mark.parametrize("raw", ["  Bot abc.def.ghi ", "bot abc.def.ghi", "abc.def.ghi\n"])
def test_bot_token_loses_prefix_and_white_space(raw):
    assert normalise("botToken", raw) == "abc.def.ghi"


@pytest.mark.parametrize("raw", ["Bot", "Bot   ", "abc def", ""])
def test_bot_token_without_a_token_is_refused(raw):
    with pytest.raises(ValidationError):
        normalise("botToken", raw)


@pytest.mark.parametrize("raw", ["1234567890123456", "123456789012345678901", "12345678901234567x"])
def test_client_id_must_be_a_snowflake(raw):
    with pytest.raises(ValidationError, match="17 to 20 digits"):
        normalise("clientId", raw)


def test_scopes_are_checked_and_deduplicated():
    assert normalise("scopes", " identify  bot identify guilds ") == "identify bot guilds"
    with pytest.raises(ValidationError, match="unknown scope nonsense"):
        normalise("scopes", "identify nonsense")
    with pytest.raises(ValidationError, match="must include identify"):
        normalise("scopes", "bot guilds")


def test_permissions_are_an_integer_bit_set():
    assert normalise("permissions", " 0002048 ") == "2048"
    with pytest.raises(ValidationError, match="whole number"):
        normalise("permissions", "-8")


def test_a_wrong_client_id_points_to_the_portal_page_its_help_text_names():
    with pytest.raises(ValidationError) as refused:
        normalise("clientId", "12345")
    assert "OAuth2 page" in discord.field("clientId").help_text
    assert "OAuth2 page" in refused.value.messages[0]
