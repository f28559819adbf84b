"""The OAuth2 token calls, on requests-oauthlib, for any registered connector.

The connector supplies its URLs, mounts its transport on the session and
maps its error answers to typed errors; everything else is shared.
"""

import json
from contextlib import contextmanager

import requests
from django.conf import settings
from django.views.decorators.debug import sensitive_variables
from oauthlib.oauth2 import BackendApplicationClient, OAuth2Error
from requests_oauthlib import OAuth2Session

from .exceptions import CredentialsRefused, ProviderError, ProviderUnavailable, Unauthorized


def oauth_session(connector, *, client_id, client=None, **kwargs):
    """An OAuth2Session whose token answers pass the connector's ``token_answer`` before oauthlib reads them."""
    session = OAuth2Session(client_id=client_id, client=client, **kwargs)
    connector.mount(session)
    # The last token answer, kept so that a grant whose answer cannot be used
    # can still be revoked. A holder of its own: the hook below must not refer
    # to the session that holds it, or every session would be a reference cycle.
    session.token_answer = answer = TokenAnswer()

    def check(response):
        if response.status_code >= 300:
            try:
                connector.raise_for_response(response)
            except Unauthorized as error:
                # A token endpoint authenticates the client alone (RFC 6749 5.2):
                # a 401 there refuses the app's credentials, never a grant.
                if isinstance(error, CredentialsRefused):
                    raise
                raise CredentialsRefused(str(error), status=error.status, code=error.code) from None
        answer.response = response
        _take_answer(connector, response)
        return response

    session.register_compliance_hook("access_token_response", check)
    session.register_compliance_hook("refresh_token_response", check)
    return session


class TokenAnswer:
    response = None


@sensitive_variables("body", "fixed")
def _take_answer(connector, response):
    """Parse the answer once, let the connector shape it, and refuse what oauthlib would fail on.

    An answer oauthlib cannot read would raise a bare exception there; it
    becomes a ProviderError here. What the connector changed is what
    oauthlib then reads.
    """
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise ProviderError(f"{connector.name} sent a token answer that could not be read.")
    fixed = connector.token_answer(body)
    expires_in, scope = fixed.get("expires_in"), fixed.get("scope")
    if not (expires_in is None or isinstance(expires_in, int) or str(expires_in).isdigit()) or not (
        scope is None or isinstance(scope, (str, list))
    ):
        raise ProviderError(f"{connector.name} sent a token answer that could not be read.")
    if fixed is not body:
        response._content = json.dumps(fixed).encode()


@contextmanager
def provider_call(connector):
    """Transport and protocol failures become typed errors without their details."""
    try:
        yield
    except requests.Timeout:
        raise ProviderUnavailable(f"{connector.name} did not answer in time.") from None
    except requests.ConnectionError:
        raise ProviderUnavailable(f"{connector.name} could not be reached.") from None
    except OAuth2Error as error:
        raise ProviderError(
            f"{connector.name} sent a token answer that could not be used ({error.error})."
        ) from None


@sensitive_variables("client_secret")
def token_client_credentials(connector, *, client_id, client_secret, scope):
    """A token for the application itself: proves the client id and secret."""
    session = oauth_session(
        connector, client_id=client_id, client=BackendApplicationClient(client_id=client_id)
    )
    with provider_call(connector):
        return session.fetch_token(
            connector.token_url,
            client_secret=client_secret,
            scope=scope,
            timeout=connector.http_timeout,
        )


@sensitive_variables("client_secret", "refresh_token")
def token_refresh(connector, *, client_id, client_secret, refresh_token):
    """Trade a refresh token for a new pair; the old refresh token dies with it.

    It waits TOKEN_REFRESH_TIMEOUT, longer than other calls: the provider may
    carry out a refresh whose answer we gave up on, and that costs the account.
    """
    session = oauth_session(connector, client_id=client_id)
    with provider_call(connector):
        return session.refresh_token(
            connector.token_url,
            refresh_token=refresh_token,
            auth=requests.auth.HTTPBasicAuth(client_id, client_secret),
            timeout=settings.TOKEN_REFRESH_TIMEOUT,
        )
