"""A permission bit set read back as the names Discord's portal shows."""

from connectors.discord.permissions import DEFAULT_PERMISSIONS
from connectors.base import Connector
from connectors.registry import registry

discord = registry.get("appmixer:discord")


def test_the_bits_set_are_named_in_discords_order():
    value = str(1 << 14 | 1 << 11 | 1 << 3)
    assert discord.describe_permissions(value) == ["Administrator", "Send Messages", "Embed Links"]


def test_the_default_permissions_read_as_names():
    names = discord.describe_permissions(str(DEFAULT_PERMISSIONS))
    assert names[:2] == ["Create Instant Invite", "Manage Channels"] and "Send Messages" in names
    assert not any(name.startswith("bit ") for name in names)


def test_a_bit_without_a_name_is_shown_by_its_number():
    assert discord.describe_permissions(str(1 << 11 | 1 << 50)) == ["Send Messages", "bit 50"]


def test_nothing_or_no_number_names_nothing():
    assert discord.describe_permissions("0") == []
    assert discord.describe_permissions("") == []


def test_a_connector_that_names_no_permissions_describes_none():
    assert Connector().describe_permissions("2048") == []
