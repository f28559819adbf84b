"""What a value pasted from the Discord Developer Portal must look like.

Client secrets and bot tokens have no documented format, so they are only
checked for what a paste gets wrong (white space, a ``Bot `` prefix); the
Test credentials button proves them against Discord.
"""

import re

from django.core.exceptions import ValidationError

from .permissions import SCOPES

SNOWFLAKE = re.compile(r"\d{17,20}")
WHITESPACE = re.compile(r"\s")


def clean_snowflake(value):
    if not SNOWFLAKE.fullmatch(value):
        raise ValidationError(
            "must be a Discord application ID: 17 to 20 digits, the Client ID "
            "shown on the Developer Portal's OAuth2 page."
        )
    return value


def clean_secret(value):
    if WHITESPACE.search(value):
        raise ValidationError("must not contain spaces or line breaks; paste it again.")
    return value


def clean_bot_token(value):
    """A token copied from a header example keeps its ``Bot `` prefix; drop it."""
    if value[:4].lower() == "bot ":
        value = value[4:].strip()
    if not value or value.lower() == "bot":
        raise ValidationError("holds no token, only the 'Bot' prefix; paste the token itself.")
    return clean_secret(value)


def clean_scopes(value):
    scopes = value.split()
    unknown = [scope for scope in scopes if scope not in SCOPES]
    if unknown:
        raise ValidationError(
            f"unknown scope {', '.join(unknown)}; Discord's are {', '.join(sorted(SCOPES))}."
        )
    if "identify" not in scopes:
        raise ValidationError("must include identify: the account is stored under the Discord user it names.")
    return " ".join(dict.fromkeys(scopes))


def clean_permissions(value):
    if not value.isdigit():
        raise ValidationError("must be Discord's permission bit set: a whole number.")
    return str(int(value))


PUBLIC_KEY = re.compile(r"[0-9a-fA-F]{64}")


def clean_public_key(value):
    if not PUBLIC_KEY.fullmatch(value):
        raise ValidationError(
            "must be the application's Public Key: 64 hexadecimal characters, from the "
            "Developer Portal's General Information page."
        )
    return value.lower()
