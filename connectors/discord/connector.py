"""The Discord connector: only what differs from the framework's defaults."""

from django.views.decorators.debug import sensitive_variables

from connectors.exceptions import ProviderError
from connectors.base import ConfigField, Connector

from . import bot, client, credentials, events
from .permissions import DEFAULT_PERMISSIONS, DEFAULT_SCOPES, PERMISSIONS, permission_names
from .validators import (
    SNOWFLAKE,
    clean_bot_token,
    clean_permissions,
    clean_public_key,
    clean_scopes,
    clean_secret,
    clean_snowflake,
)


def avatar_url(user):
    """The user's avatar, or the default one Discord shows when there is none.

    On the CDN_URL setting, the image origin the connector adds to the
    Content-Security-Policy.
    """
    uid, avatar = user["id"], user.get("avatar")
    cdn = client.setting("CDN_URL")
    if avatar:
        return f"{cdn}/avatars/{uid}/{avatar}.png?size=128"
    return f"{cdn}/embed/avatars/{(int(uid) >> 22) % 6}.png"


def _is_snowflake(value):
    return isinstance(value, str) and SNOWFLAKE.fullmatch(value) is not None


def _is_permissions(value):
    """A permission bit set as Discord sends it: an unsigned 64-bit integer in digits."""
    return isinstance(value, str) and value.isdigit() and len(value) <= 20 and int(value) < 1 << 64


def _bot_role_permissions(guild, client_id):
    """The permissions of the role Discord manages for our bot in ``guild``, or None if not listed."""
    roles = guild.get("roles")
    for role in roles if isinstance(roles, list) else ():
        tags = role.get("tags") if isinstance(role, dict) else None
        if isinstance(tags, dict) and tags.get("bot_id") == client_id and _is_permissions(role.get("permissions")):
            return role["permissions"]
    return None


class DiscordConnector(Connector):
    service_id = "appmixer:discord"
    provider = "discord"
    name = "Discord"
    fields = (
        ConfigField(
            key="clientId",
            label="Client ID",
            help_text="The application ID from the Developer Portal (OAuth2 page).",
            clean=clean_snowflake,
        ),
        ConfigField(
            key="clientSecret",
            label="Client secret",
            help_text="From the Developer Portal's OAuth2 page (Reset Secret shows it once).",
            secret=True,
            clean=clean_secret,
        ),
        ConfigField(
            key="botToken",
            label="Bot token",
            help_text="From the Developer Portal's Bot page (Reset Token shows it once).",
            secret=True,
            clean=clean_bot_token,
        ),
        ConfigField(
            key="publicKey",
            label="Public key",
            help_text=(
                "From the Developer Portal's General Information page; verifies the webhook "
                "events Discord sends (needed only for them)."
            ),
            clean=clean_public_key,
            required=False,
        ),
        ConfigField(
            key="scopes",
            label="Scopes",
            help_text=(
                "Space separated. Keep bot to add the bot to a server; drop it for "
                "identity-only connections; add email or guilds if you need them."
            ),
            clean=clean_scopes,
            default=DEFAULT_SCOPES,
        ),
        ConfigField(
            key="permissions",
            label="Bot permissions",
            help_text="What the bot may do in the server the user picks.",
            clean=clean_permissions,
            default=str(DEFAULT_PERMISSIONS),
            flags=PERMISSIONS,
        ),
    )
    server_noun = "server"
    bot_noun = "the bot"
    expects_server = True
    portal_name = "Developer Portal"
    connect_hint = "Sign in with Discord and pick a server for the bot."
    revoke_hint = "remove the app under Discord's Authorized Apps settings"
    check_description = "the bot token, the client ID and secret, and the portal settings above"
    setup_checklist = (
        "OAuth2 → Redirects: add the redirect URL above, exactly as shown.",
        "Bot → Public Bot: on.",
        "Bot → Requires OAuth2 Code Grant: on.",
        "Bot → Server Members Intent: on.",
        "Installation → User Install scopes: applications.commands.",
        "Installation → Guild Install scopes: applications.commands and bot.",
        "Webhooks → Endpoint URL (optional): the events URL above, with the events "
        "Application Authorized and Application Deauthorized; copy General Information → "
        "Public Key here.",
    )

    @property
    def token_url(self):
        return self.setting("API_BASE_URL") + client.TOKEN

    def image_origins(self):
        return (self.setting("CDN_URL"),)

    def mount(self, session):
        return client.mount(session)

    def raise_for_response(self, response):
        return client.raise_for_response(response)

    def check_credentials(self, values):
        return credentials.credentials_check(connector=self, values=values)

    def describe_permissions(self, value):
        return permission_names(value)

    def authorize_params(self, values):
        """Bot install extras: only meaningful, and only sent, with the bot scope."""
        if "bot" not in self.scopes(values):
            return {}
        return {"permissions": values["permissions"], "integration_type": "0"}

    def fetch_profile(self, access_token):
        """The user's profile; the core makes each value safe for its column, or refuses it."""
        user = client.current_user(client.bearer(access_token))
        if not isinstance(user, dict) or not _is_snowflake(user.get("id")):
            raise ProviderError("Discord sent a user without a valid id.")
        return {
            "uid": user["id"],
            "username": user.get("username"),
            "display_name": user.get("global_name") or user.get("username"),
            "avatar_url": avatar_url(user),
            "email": user.get("email"),
        }

    def server_from_token(self, token, *, params, values):
        """The token answer's guild is where the bot now is; the redirect URL is not believed.

        The bot's permissions there are those of the role Discord made for it
        when it joined (the guild's role whose ``tags.bot_id`` is this
        application), when the answer lists it; else what the operator asked
        for, marked as requested. The redirect's ``permissions`` parameter is
        never used: the person can edit it.
        """
        guild = token.get("guild")
        if not guild:
            return None
        if not isinstance(guild, dict) or not _is_snowflake(guild.get("id")):
            raise ProviderError("Discord sent a server without a valid id.")
        granted = _bot_role_permissions(guild, values["clientId"])
        return {
            "id": guild["id"],
            "name": guild.get("name"),
            "permissions": granted if granted is not None else values["permissions"],
            "permissions_granted": granted is not None,
        }

    @sensitive_variables("tokens", "token", "values")
    def revoke(self, tokens, values, *, scope):
        """One call for either scope: revoking either token ends that authorization at Discord."""
        token, hint = tokens.refresh_token, "refresh_token"
        if not token:
            token, hint = tokens.access_token, "access_token"
        client.revoke(
            token,
            client_id=values["clientId"],
            client_secret=values["clientSecret"],
            token_type_hint=hint,
        )

    def server_channels(self, server, values):
        return bot.guild_channels(server, values)

    def send_message(self, server, channel_id, content, values):
        return bot.send_message(server, channel_id, content, values)

    accepts_events = True
    # X-Signature-Ed25519: 128 hex characters; X-Signature-Timestamp: 1–12 ASCII digits.
    event_headers = events.HEADERS

    def event_verify(self, headers, body, values):
        events.event_verify(headers, body, values.get("publicKey"))

    def event_read(self, headers, body):
        return events.event_read(headers, body)

    def event_key(self, headers, body, event):
        return events.event_key(headers)

    def grant_info(self, access_token):
        info = client.current_authorization(access_token)
        return {"scopes": " ".join(info.get("scopes") or []), "expires": info.get("expires") or ""}
