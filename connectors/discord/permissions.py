"""The bot permissions an operator can grant, from topics/permissions.

Only the ones a bot acting for a user plausibly needs are offered; the
stored value is Discord's integer bit set.
"""

PERMISSIONS = (
    ("Create Instant Invite", 1 << 0),
    ("Manage Channels", 1 << 4),
    ("Add Reactions", 1 << 6),
    ("View Channels", 1 << 10),
    ("Send Messages", 1 << 11),
    ("Manage Messages", 1 << 13),
    ("Embed Links", 1 << 14),
    ("Attach Files", 1 << 15),
    ("Read Message History", 1 << 16),
    ("Mention Everyone", 1 << 17),
    ("Use External Emojis", 1 << 18),
    ("Manage Nicknames", 1 << 27),
    ("Manage Roles", 1 << 28),
    ("Manage Webhooks", 1 << 29),
    ("Use Application Commands", 1 << 31),
    ("Manage Events", 1 << 33),
    ("Manage Threads", 1 << 34),
    ("Create Public Threads", 1 << 35),
    ("Create Private Threads", 1 << 36),
    ("Send Messages in Threads", 1 << 38),
    ("Moderate Members", 1 << 40),
    ("Create Events", 1 << 44),
)

# Named only to be read back: a server's role may hold bits the form does not offer.
OTHER_PERMISSIONS = (
    ("Kick Members", 1 << 1),
    ("Ban Members", 1 << 2),
    ("Administrator", 1 << 3),
    ("Manage Server", 1 << 5),
    ("View Audit Log", 1 << 7),
    ("Connect", 1 << 20),
    ("Speak", 1 << 21),
)


def permission_names(value):
    """The names of the bits set in ``value`` (digits), in Discord's order; unnamed bits by number."""
    if not isinstance(value, str) or not value.isdigit():
        return []
    bits = int(value)
    named = dict((bit, name) for name, bit in PERMISSIONS + OTHER_PERMISSIONS)
    return [
        named.get(1 << n, f"bit {n}") for n in range(bits.bit_length()) if bits & (1 << n)
    ]


DEFAULT_PERMISSIONS = sum(
    bit
    for name, bit in PERMISSIONS
    if name
    in {
        "Create Instant Invite",
        "Manage Channels",
        "Add Reactions",
        "View Channels",
        "Send Messages",
        "Manage Messages",
        "Embed Links",
        "Attach Files",
        "Read Message History",
        "Manage Roles",
        "Manage Webhooks",
        "Use Application Commands",
        "Manage Events",
        "Manage Threads",
        "Create Public Threads",
        "Send Messages in Threads",
        "Create Events",
    }
)

# topics/oauth2: the scopes an operator may ask for in this flow.
SCOPES = {
    "identify",
    "email",
    "guilds",
    "guilds.members.read",
    "bot",
    "applications.commands",
    "webhook.incoming",
    "connections",
    "role_connections.write",
}
DEFAULT_SCOPES = "identify bot applications.commands"
