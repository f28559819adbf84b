"""The Slack connector (OAuth v2): only what differs from the framework's defaults.

Slack answers every Web API call with HTTP 200 and ``"ok": false`` for its
errors; the token answer nests the installing user under ``authed_user``
and puts the bot token at the top; its scopes are comma separated.
"""

import re

from django.core.exceptions import ValidationError
from django.views.decorators.debug import sensitive_variables

from connectors.base import CheckResult, ConfigField, Connector
from connectors.exceptions import CredentialsRefused, InvalidGrant, ProviderError, ProviderRejected, Unauthorized

ID = re.compile(r"\d+\.\d+")
USER = re.compile(r"[UW][A-Z0-9]{2,30}")
TEAM = re.compile(r"[TE][A-Z0-9]{2,30}")
SECRET = re.compile(r"[0-9a-f]{32}")
SCOPES = re.compile(r"[a-z][a-z.:-]*(,[a-z][a-z.:-]*)*")
# Answers that mean the code or the refresh token is spent: only a new
# connection helps.
DEAD_GRANT = {"invalid_code", "code_already_used", "invalid_refresh_token", "token_revoked", "token_expired"}
BAD_CLIENT = {"invalid_client_id": "Client ID", "bad_client_secret": "Client secret"}


def clean_id(value):
    if not ID.fullmatch(value):
        raise ValidationError("A Slack client ID is two numbers joined by a dot, e.g. 2141029472.691202649728.")
    return value


def clean_secret(value):
    if not SECRET.fullmatch(value):
        raise ValidationError("A Slack secret is 32 hexadecimal characters, as Basic Information shows it.")
    return value


def clean_scopes(value):
    value = ",".join(part.strip() for part in value.replace(" ", ",").split(",") if part.strip())
    if value and not SCOPES.fullmatch(value):
        raise ValidationError("Scopes are names like chat:write, separated by commas.")
    return value


class SlackConnector(Connector):
    service_id = "appmixer:slack"
    provider = "slack"
    name = "Slack"
    fields = (
        ConfigField("clientId", "Client ID", "Basic Information → App Credentials.", clean=clean_id),
        ConfigField("clientSecret", "Client secret", "Basic Information → App Credentials (Show).",
                    secret=True, clean=clean_secret),
        ConfigField("signingSecret", "Signing secret", "Basic Information → App Credentials (Show).",
                    secret=True, clean=clean_secret),
        ConfigField("scopes", "Bot scopes", "Comma separated; OAuth & Permissions → Bot Token Scopes.",
                    clean=clean_scopes, default="chat:write,channels:read"),
        ConfigField("userScopes", "User scopes", "Comma separated, optional: ask them to act as the user.",
                    clean=clean_scopes, required=False),
    )
    scope_delimiter = ","
    server_noun = "workspace"
    bot_noun = "the app"
    expects_server = True
    portal_name = "app settings"
    connect_hint = "Sign in with Slack and pick a workspace for the app."
    revoke_hint = "remove the app under your Slack workspace's Manage apps page"
    check_description = "the client ID and secret, as Slack's token endpoint takes them"
    setup_checklist = (
        "OAuth & Permissions → Redirect URLs: add the redirect URL above, exactly as shown.",
        "OAuth & Permissions → Bot Token Scopes: add the bot scopes configured here.",
        "Basic Information → App Credentials: copy the Signing Secret here.",
    )

    @property
    def token_url(self):
        return self.setting("API_BASE_URL") + "/oauth.v2.access"

    def scopes(self, values):
        return values["scopes"].split(",")

    def authorize_params(self, values):
        return {"user_scope": values["userScopes"]} if values.get("userScopes") else {}

    @sensitive_variables("body", "user")
    def token_answer(self, body):
        """Slack's errors become ours; the account takes the user's token when user scopes were asked."""
        if body.get("ok") is not True:
            error = body.get("error") if isinstance(body.get("error"), str) else "unknown_error"
            if error in DEAD_GRANT:
                raise InvalidGrant(f"Slack no longer accepts this grant ({error}).")
            if error in BAD_CLIENT:
                raise CredentialsRefused(f"Slack refused the client credentials ({error}).")
            raise ProviderRejected(f"Slack refused the request ({error[:60]}).")
        user = body.get("authed_user") if isinstance(body.get("authed_user"), dict) else {}
        holder = user if user.get("access_token") else body
        fixed = {**body, "token_type": "Bearer", "bot_token": body.get("access_token"), "bot_scope": body.get("scope")}
        for key in ("access_token", "refresh_token", "expires_in", "scope"):
            fixed.pop(key, None)
            if holder.get(key) is not None:
                fixed[key] = holder[key]
        if isinstance(fixed.get("scope"), str):
            fixed["scope"] = fixed["scope"].replace(",", " ")
        return fixed

    def profile(self, token, values):
        user, team = token.get("authed_user"), token.get("team")
        uid = user.get("id") if isinstance(user, dict) else None
        if not (isinstance(uid, str) and USER.fullmatch(uid)):
            raise ProviderError("Slack sent an installing user without a valid id.")
        name = team.get("name") if isinstance(team, dict) else None
        return {"uid": uid, "username": uid, "display_name": f"{uid} in {name}" if name else uid}

    @sensitive_variables("token")
    def server_from_token(self, token, *, params, values):
        team = token.get("team")
        if not isinstance(team, dict) or not (isinstance(team.get("id"), str) and TEAM.fullmatch(team["id"])):
            raise ProviderError("Slack sent a workspace without a valid id.")
        scope = token.get("bot_scope")
        return {
            "id": team["id"],
            "name": team.get("name"),
            "permissions": scope if isinstance(scope, str) else values["scopes"],
            "permissions_granted": isinstance(scope, str),
            "token": token.get("bot_token"),
        }

    def describe_permissions(self, value):
        return [scope for scope in value.split(",") if scope]

    @sensitive_variables("tokens", "values", "token")
    def revoke(self, tokens, values, *, scope):
        """auth.revoke for either scope: it ends the person's token, and uninstalling
        (apps.uninstall) would end the app for the whole workspace, more than a grant."""
        token = tokens.access_token or tokens.refresh_token
        self._ok(self.call("POST", self.setting("API_BASE_URL") + "/auth.revoke",
                           headers={"Authorization": f"Bearer {token}"}))

    @sensitive_variables("access_token")
    def grant_info(self, access_token):
        """auth.test proves the token; Slack names its scopes in a header."""
        response = self.request("POST", self.setting("API_BASE_URL") + "/auth.test",
                                headers={"Authorization": f"Bearer {access_token}"})
        self._ok(self.raise_for_response(response))
        return {"scopes": response.headers.get("X-OAuth-Scopes", "").replace(",", " "), "expires": ""}

    def _ok(self, body):
        if body.get("ok") is not True:
            error = str(body.get("error"))[:60]
            kind = Unauthorized if error in {"invalid_auth", "not_authed", "token_revoked"} else ProviderRejected
            raise kind(f"Slack refused the request ({error}).")
        return body

    @sensitive_variables("values", "body")
    def check_credentials(self, values):
        """A made-up code proves the client id and secret: Slack checks them before the code."""
        try:
            body = self.call("POST", self.token_url, auth=(values["clientId"], values["clientSecret"]),
                             data={"code": "backoffice-credentials-check", "redirect_uri": self.redirect_url()})
        except ProviderError as error:
            return [CheckResult("Client ID and secret", False, str(error), "Try again in a minute.")]
        error = body.get("error")
        if error in BAD_CLIENT:
            wrong = BAD_CLIENT[error]
            return [CheckResult(wrong, False, f"Slack refused it ({error}).",
                                f"Copy the {wrong} again from Basic Information → App Credentials.")]
        if error not in ("invalid_code", "bad_redirect_uri"):
            return [CheckResult("Client ID and secret", False, f"Slack answered {str(error)[:60]!r}.")]
        registered = error == "invalid_code"
        return [
            CheckResult("Client ID", True, "Slack knows this client ID."),
            CheckResult("Client secret", True, "Slack accepted the secret with it."),
            CheckResult(
                "Redirect URL registered", registered,
                "Slack accepts the redirect URL." if registered else "Slack does not know the redirect URL.",
                "" if registered else "OAuth & Permissions → Redirect URLs: add the redirect URL above.",
            ),
        ]
