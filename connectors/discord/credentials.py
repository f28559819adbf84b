"""Test credentials: prove the stored values against Discord, one result each.

Each check says what it found and, when it fails, what to change in the
Developer Portal; a failure of one check never hides the others.
"""

from django.views.decorators.debug import sensitive_variables

from connectors.exceptions import ConnectorError, ProviderUnavailable, Unauthorized
from connectors.oauth import token_client_credentials
from connectors.base import CheckResult

from . import client

# resources/application: application flags for the Server Members Intent.
GATEWAY_GUILD_MEMBERS = 1 << 14
GATEWAY_GUILD_MEMBERS_LIMITED = 1 << 15

RETRY_HINT = "Discord could not be asked just now; try again in a minute."


def _check(name, ok, detail, hint):
    """A hint is advice for a failure; a passing check carries none."""
    return CheckResult(name, ok, detail, "" if ok else hint)


def _failure(name, error, hint):
    """Name the error; a provider outage gets a retry hint instead of a portal hint."""
    if isinstance(error, ProviderUnavailable):
        hint = RETRY_HINT
    return CheckResult(name, False, str(error), hint)


@sensitive_variables("values", "token")
def check_bot_token(values):
    name = "Bot token"
    token = values.get("botToken")
    if not token:
        return CheckResult(name, False, "Not set.", "Paste the token from the Bot page."), None
    try:
        bot = client.current_user(client.bot(token))
    except ConnectorError as error:
        return _failure(
            name, error, "Reset the token on the Developer Portal's Bot page and paste the new one."
        ), None
    return CheckResult(name, True, f"Accepted: the bot is {bot.get('username')} ({bot.get('id')})."), bot


@sensitive_variables("values", "secret")
def check_client(connector, values):
    name = "Client ID and secret"
    client_id, secret = values.get("clientId"), values.get("clientSecret")
    if not client_id or not secret:
        return CheckResult(
            name, False, "Not set.", "Paste the Client ID and Client Secret from the OAuth2 page."
        )
    try:
        token_client_credentials(connector, client_id=client_id, client_secret=secret, scope=["identify"])
    except ConnectorError as error:
        if isinstance(error, Unauthorized):
            error = "Discord refused this client ID and secret (invalid_client)."
        return _failure(
            name,
            error,
            "Copy the Client ID again and reset the Client Secret on the OAuth2 page.",
        )
    return CheckResult(name, True, "Accepted by Discord (client_credentials grant).")


def check_portal(connector, values):
    """Read the application with the bot token and compare it with the guide."""
    try:
        app = client.current_application(values["botToken"])
    except ConnectorError as error:
        return [
            _failure("Portal settings", error, "Fix the bot token first; the settings are read with it.")
        ]
    redirect = connector.redirect_url()
    client_id = values.get("clientId")
    results = [
        _check(
            "Bot belongs to this client ID",
            app.get("id") == client_id,
            f"The bot's application is {app.get('id')}; the client ID is {client_id or 'not set'}.",
            "Take the Client ID and the bot token from the same application.",
        ),
    ]
    if "redirect_uris" in app:
        registered = redirect in (app.get("redirect_uris") or [])
        results.append(
            _check(
                "Redirect URL registered",
                registered,
                f"{redirect} is {'' if registered else 'not '}among the application's redirects.",
                "Add it under OAuth2 → Redirects, character for character.",
            )
        )
    else:
        results.append(
            CheckResult(
                "Redirect URL registered",
                True,
                f"Discord did not list the redirects; make sure {redirect} is one of them.",
            )
        )
    members_intent = bool(app.get("flags", 0) & (GATEWAY_GUILD_MEMBERS | GATEWAY_GUILD_MEMBERS_LIMITED))
    for name, ok, where in (
        ("Public Bot on", bool(app.get("bot_public")), "Bot → Public Bot"),
        ("Requires OAuth2 Code Grant on", bool(app.get("bot_require_code_grant")), "Bot → Requires OAuth2 Code Grant"),
        ("Server Members Intent on", members_intent, "Bot → Privileged Gateway Intents → Server Members Intent"),
    ):
        results.append(
            _check(name, ok, "On." if ok else "Off.", f"Turn on {where} in the Developer Portal.")
        )
    return results + check_events(connector, values, app)


def check_events(connector, values, app):
    """The public key must be the application's; an events URL is information, never a failure."""
    stored, verify_key = values.get("publicKey"), app.get("verify_key")
    if not stored:
        key = CheckResult(
            "Public key", True, "Not set: needed only to verify webhook events.",
            "To take events, copy General Information → Public Key here.",
        )
    else:
        key = _check(
            "Public key",
            stored == (verify_key or "").lower(),
            "The application's public key." if stored == (verify_key or "").lower()
            else "Not the public key Discord shows for this application.",
            "Copy it again from the Developer Portal's General Information page.",
        )
    registered, ours = app.get("event_webhooks_url"), connector.events_url()
    if not registered:
        events = CheckResult(
            "Events URL", True, "No events URL is registered: an account whose user removes "
            "the app is noticed at its next refresh.", f"Optional: register {ours} under Webhooks.",
        )
    elif registered == ours:
        events = CheckResult("Events URL", True, f"Discord sends events to {ours}.")
    else:
        events = CheckResult(
            "Events URL", True, f"Discord sends events to {registered}, not here.",
            f"To take them here, register {ours} under Webhooks.",
        )
    return [key, events]


def credentials_check(*, connector, values):
    bot_result, bot = check_bot_token(values)
    results = [bot_result, check_client(connector, values)]
    if bot is not None:
        results.extend(check_portal(connector, values))
    else:
        results.append(
            CheckResult(
                "Portal settings",
                False,
                "Not checked: they are read with the bot token.",
                "Fix the bot token first.",
            )
        )
    return results
