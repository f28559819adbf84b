"""The authorization-code flow: start it, finish it, for any connector.

``state`` lives in the Django session (stored in the database, so any
process or host may finish a flow another started): it is random, single
use, bound to that session, and expires after ``STATE_TTL`` seconds.
"""

import logging
import secrets
import time
from contextlib import contextmanager

from django.db import connection, transaction
from django.views.decorators.debug import sensitive_variables
from oauthlib.oauth2 import WebApplicationClient

from .accounts import account_connect
from .config import config_client_values, credentials_accepted, credentials_refused_note
from .exceptions import AccessDenied, AuthorizationFailed, CredentialsRefused, StateMismatch
from .oauth import oauth_session, provider_call
from .revocations import grant_revoke_unstored

logger = logging.getLogger("connectors.flow")

SESSION_KEY = "connectors:oauth-states"
STATE_TTL = 600
# A session keeps this many flows open at once; starting another drops the
# oldest, so no visitor can make a session grow without bound.
MAX_PENDING = 5
# Longer callback parameters are refused before they are used.
MAX_PARAM_LENGTH = 2048
# What the log calls a grant revoked because the callback could not store it.
UNSTORED = "a grant that could not be stored"


@contextmanager
def _unflushed():
    """A transaction whose commit does not wait for the disk (PostgreSQL; SQLite's never does here).

    For the session's states only: other processes see the commit at once,
    which is what single use needs, and a database crash that lost the last
    moments' commits would at worst fail a flow in progress. The account a
    flow stores is committed durably, as always.
    """
    if connection.vendor != "postgresql":
        yield
        return
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO OFF")
        yield


def _save_now(session):
    """Save the session now (see _unflushed), and not again at the response unless it changes again."""
    with _unflushed():
        session.save()
    session.modified = False


def flow_start(session, *, connector, next_url=None):
    """Remember a new state in ``session`` and return the provider's authorize URL."""
    values = config_client_values(connector)
    now = time.time()
    pending = {
        state: entry
        for state, entry in session.get(SESSION_KEY, {}).items()
        if now - entry["created"] < STATE_TTL
    }
    while len(pending) >= MAX_PENDING:
        pending.pop(min(pending, key=lambda state: pending[state]["created"]))
    state = secrets.token_urlsafe(32)
    pending[state] = {"provider": connector.provider, "created": now, "next": next_url}
    session[SESSION_KEY] = pending
    _save_now(session)
    # oauthlib's client alone: building the URL needs no HTTP session.
    return WebApplicationClient(values["clientId"]).prepare_request_uri(
        connector.authorize_url,
        redirect_uri=connector.redirect_url(),
        # Joined here, so that oauthlib sends the connector's delimiter.
        scope=connector.scope_delimiter.join(connector.scopes(values)),
        state=state,
        **connector.authorize_params(values),
    )


def _take_state(session, *, connector, state):
    """Pop the state whatever happens next, so that it can never be used twice.

    The session is saved at once: Django saves none for a response of 500 or
    more, and a worker killed later saves nothing, either of which would
    bring the state back for a second use.
    """
    pending = session.get(SESSION_KEY, {})
    entry = pending.pop(state, None) if state else None
    if entry is not None:
        session[SESSION_KEY] = pending
        _save_now(session)
    if entry is None or entry["provider"] != connector.provider:
        raise StateMismatch(
            "This sign-in link is not valid for your session: it was already used, "
            "or it was started in another browser or session."
        )
    if time.time() - entry["created"] >= STATE_TTL:
        raise StateMismatch("This sign-in link has expired (after 10 minutes).")
    return entry


@sensitive_variables("params", "values", "token")
def flow_finish(session, *, user, connector, params):
    """Check the callback, exchange the code, store the account.

    Returns ``(result, next_url)``. Raises a FlowError for a bad callback and a
    ProviderError when the provider fails; nothing is stored in either case.
    """
    params = {key: value for key, value in params.items() if len(value) <= MAX_PARAM_LENGTH}
    entry = _take_state(session, connector=connector, state=params.get("state"))
    error = params.get("error")
    if error == "access_denied":
        raise AccessDenied(connector.cancel_message)
    if error or not params.get("code"):
        raise AuthorizationFailed(
            f"{connector.name} did not authorize the connection ({error or 'no code was sent'})."
        )
    values = config_client_values(connector)
    oauth = oauth_session(
        connector,
        client_id=values["clientId"],
        redirect_uri=connector.redirect_url(),
        client=WebApplicationClient(values["clientId"]),
    )
    try:
        with provider_call(connector):
            token = oauth.fetch_token(
                connector.token_url,
                code=params["code"],
                client_secret=values["clientSecret"],
                timeout=connector.http_timeout,
            )
    except BaseException as failure:
        if isinstance(failure, CredentialsRefused):
            _credentials_refused(connector, failure)
        # Whatever failed, a 2xx answer may already hold a live grant.
        answered = _answered_tokens(oauth)
        if answered is not None:
            grant_revoke_unstored(connector=connector, tokens=answered, values=values, what=UNSTORED)
        raise
    credentials_accepted(connector)
    uid = ""
    try:
        profile = connector.profile(token, values)
        uid = profile.get("uid", "") if isinstance(profile, dict) else ""
        server = connector.server_from_token(token, params=params, values=values)
        result = account_connect(
            user=user, connector=connector, token=token, profile=profile, server=server
        )
    except BaseException:
        # Nothing may stay live at the provider that is not stored here.
        grant_revoke_unstored(connector=connector, tokens=token, uid=uid, values=values, what=UNSTORED)
        raise
    if result.replaced is not None:
        # This token only: whatever else the person granted (the new grant) lives on.
        grant_revoke_unstored(
            connector=connector, tokens=result.replaced, uid=result.account.uid, values=values,
            what="the grant this connection replaced",
        )
    logger.info(
        "connected %s account %s for user %s%s",
        connector.name,
        result.account.uid,
        user.pk,
        f" (added to {connector.server_noun} {server['id']})" if server else "",
    )
    return result, entry["next"]


def _credentials_refused(connector, error):
    """The app's own credentials refused at the exchange: flag the connector (once), blame no one's account."""
    if credentials_refused_note(connector, error):
        logger.error("%s refused the client credentials at a code exchange: %s; correct them in the admin",
                     connector.name, error)


@sensitive_variables("answer", "body")
def _answered_tokens(oauth):
    """The tokens of a 2xx token answer oauthlib could not read, if any can be found."""
    answer = oauth.token_answer.response
    try:
        body = answer.json() if answer is not None else None
    except ValueError:
        return None
    return body if isinstance(body, dict) else None
