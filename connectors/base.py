"""The connector contract: every hook the framework calls, each with a default.

A provider's package subclasses :class:`Connector`, sets its identity
(``service_id``, ``provider``, ``name``, ``fields``) and overrides only what
differs from plain OAuth2 (RFC 6749) as the defaults here speak it; the
framework calls nothing that is not declared on this class. The words
people read about a provider (what a server is called there, what acts for
the user there, how to cancel or reconnect) come from these attributes too,
so that no page or message of the framework names a provider.
"""

import hashlib
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Callable

import requests
from django.conf import settings
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.views.decorators.debug import sensitive_variables
from requests.adapters import HTTPAdapter

from .exceptions import (
    CredentialsRefused,
    EventRefused,
    InvalidGrant,
    NotSupported,
    ProviderError,
    ProviderRejected,
    ProviderUnavailable,
    RateLimited,
    Unauthorized,
)


@dataclass(frozen=True)
class ConfigField:
    """One configuration key of a connector, as the operator sees it."""

    key: str
    label: str
    help_text: str = ""
    secret: bool = False
    # Runs on the stripped value; returns the value to store or raises
    # ValidationError with a message an operator can act on.
    clean: Callable[[str], str] | None = None
    # Stored when the operator set nothing; secrets never have one.
    default: str = ""
    # Named bits of an integer bit set (label -> bit), shown as check boxes.
    flags: tuple[tuple[str, int], ...] = ()
    # False for a value only some uses need (a key for events, extra
    # scopes): lists do not show it missing.
    required: bool = True

    def normalise(self, raw):
        value = (raw or "").strip()
        if not value:
            raise ValidationError("This value is empty.")
        if self.clean is not None:
            value = self.clean(value)
        return value


@dataclass(frozen=True)
class ProviderEvent:
    """A verified event, as the framework acts on it.

    ``kind``: ``ping`` (the provider checks the endpoint), ``removed`` (these
    identities removed the app: their accounts need a reconnect),
    ``authorized`` (recorded), ``other`` (ignored). ``uids`` are the
    provider's user ids concerned; ``name`` is the provider's own name of the
    event, for the log. ``id`` is the provider's id of the event, None when
    it gives none; ``time`` when it happened (an aware datetime), None when
    the delivery does not say: a ``removed`` older than an account's last
    connect speaks of a grant that is gone, and leaves the account alone.
    """

    kind: str
    uids: tuple[str, ...] = ()
    name: str = ""
    id: str | None = None
    time: datetime | None = None


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check of a connector's credentials against the provider."""

    name: str
    ok: bool
    detail: str
    hint: str = ""


def _number(value):
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if 0 <= number < float("inf") else None


def typed_answer(response, *, name, retry_after):
    """A provider's answer as its JSON body, or the typed error its status says.

    Shared by every connector's ``raise_for_response``; ``name`` words the
    messages, ``retry_after(response)`` reads a 429's wait. The body's
    ``error`` (RFC 6749) or ``code`` names a refusal.
    """
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = None
    if status == 429:
        raise RateLimited(f"{name} is rate limiting these requests; try again shortly.", retry_after=retry_after(response))
    if status >= 500:
        raise ProviderUnavailable(f"{name} answered with a server error (HTTP {status}); try again later.")
    if status >= 400:
        fields = body if isinstance(body, dict) else {}
        error = fields.get("error") if isinstance(fields.get("error"), str) else None
        code = fields.get("code") if isinstance(fields.get("code"), (int, str)) else None
        if error == "invalid_grant":
            raise InvalidGrant(f"{name} no longer accepts this grant (invalid_grant).", status=status)
        if error == "invalid_client":
            raise CredentialsRefused(
                f"{name} refused the client credentials (HTTP {status}, invalid_client).", status=status, code=code
            )
        if status == 401:
            raise Unauthorized(
                f"{name} refused the credentials (HTTP {status}, {error or 'unauthorized'}).", status=status, code=code
            )
        raise ProviderRejected(f"{name} refused the request (HTTP {status}, {error or code or 'error'}).",
                               status=status, code=code)
    if body is None:
        raise ProviderError(f"{name} answered HTTP {status} with a body that is not JSON.")
    return body


# What a revocation ends (Connector.revoke's ``scope``): these tokens only, or
# the person's whole authorization of the app.
REVOKE_TOKEN, REVOKE_GRANT = "token", "grant"


# One pool for every connector that keeps the default transport; sessions are
# per thread, since requests.Session is not thread-safe.
_default_adapter = HTTPAdapter(pool_connections=4, pool_maxsize=32)
_local = threading.local()


class Connector:
    """Base class of every connector: the contract, with plain OAuth2 as the default.

    Required: ``service_id``, ``provider``, ``name``, ``fields``, and the
    provider's URLs in its block of ``settings.CONNECTORS`` (or overridden
    properties). Everything else has a default that suits a provider that
    follows RFC 6749 and describes the user at ``profile_url``.
    """

    # --- Identity -------------------------------------------------------
    service_id: str = ""
    # The URL slug (/auth/<provider>/connect) and the key of the connector's
    # block in settings.CONNECTORS.
    provider: str = ""
    # The provider's name, as people read it in pages, messages and logs.
    name: str = ""
    fields: tuple[ConfigField, ...] = ()
    # The values without which no flow can start (read without decrypting).
    flow_keys: tuple[str, ...] = ("clientId", "clientSecret")

    # --- Words ----------------------------------------------------------
    # What the provider calls the place an account connects the app to
    # (a server, a workspace), and what acts for the user there.
    server_noun: str = "server"
    bot_noun: str = "the app"
    # Whether a connection normally brings such a place: when it does and
    # one came without, the person is warned.
    expects_server: bool = False
    # Where the operator registers the application, as the admin heads it.
    portal_name: str = "developer settings"
    # A short list shown to the operator beside the redirect URL.
    setup_checklist: tuple[str, ...] = ()

    @property
    def connect_hint(self):
        """The line beside Connect account on the accounts page."""
        return f"Sign in with {self.name}."

    @property
    def cancel_message(self):
        """What the person reads after pressing Cancel on the consent page."""
        return f"You cancelled at {self.name}; nothing was connected."

    @property
    def reconnect_reason(self):
        """Stored on an account whose grant the provider no longer accepts."""
        return (
            f"{self.name} no longer accepts this account's grant (the app was removed or the "
            "access revoked). Reconnect it to use it again."
        )

    @property
    def revoke_hint(self):
        """What the person can do when revoking at the provider failed."""
        return f"remove the app in your {self.name} account's settings"

    @property
    def check_description(self):
        """What Test credentials proves, for the admin's description of the button."""
        return "the client ID and secret"

    # --- Settings -------------------------------------------------------
    def setting(self, name, default=None):
        """A value from this connector's block of ``settings.CONNECTORS``."""
        return settings.CONNECTORS.get(self.provider, {}).get(name, default)

    @property
    def authorize_url(self):
        return self.setting("AUTHORIZE_URL")

    @property
    def token_url(self):
        return self.setting("TOKEN_URL")

    @property
    def profile_url(self):
        """Where the default ``fetch_profile`` reads the user; None when it is not used."""
        return self.setting("PROFILE_URL")

    @property
    def http_timeout(self):
        """Seconds before a call to the provider gives up (refreshes: TOKEN_REFRESH_TIMEOUT)."""
        return self.setting("HTTP_TIMEOUT", 10.0)

    def redirect_url(self):
        """The URL to register at the provider, character for character."""
        return settings.PUBLIC_BASE_URL + reverse(
            "oauth-callback", kwargs={"provider": self.provider}
        )

    def events_url(self):
        """Where the provider sends its events (with ``accepts_events``), to register there."""
        return settings.PUBLIC_BASE_URL + reverse("provider-events", kwargs={"provider": self.provider})

    def image_origins(self):
        """Origins the pages may load images from (avatars), for the Content-Security-Policy."""
        return ()

    # --- Authorization request -------------------------------------------
    # How the scope parameter joins scopes (RFC 6749: a space).
    scope_delimiter: str = " "

    def scopes(self, values):
        """The scopes to ask for, from the stored values."""
        return values.get("scopes", "").split()

    def authorize_params(self, values):
        """Extra query parameters of the authorize URL."""
        return {}

    # --- Transport and errors --------------------------------------------
    def mount(self, session):
        """Give ``session`` this connector's transport; every call to the provider goes through one.

        The default shares one pool, ignores the environment's proxies and
        netrc (a netrc entry would replace the credentials sent), and uses
        the block's PROXY when set. A connector with rate limits of its own
        mounts an adapter that keeps them (rate-limit handling lives here).
        """
        session.mount("http://", _default_adapter)
        session.mount("https://", _default_adapter)
        session.trust_env = False
        proxy = self.setting("PROXY")
        if proxy:
            session.proxies = {"http": proxy, "https": proxy}
        return session

    def session(self):
        """A session mounted by ``mount``, one per thread and connector."""
        sessions = _local.__dict__.setdefault("sessions", {})
        session = sessions.get(self.service_id)
        if session is None:
            session = sessions[self.service_id] = self.mount(requests.Session())
        return session

    def retry_after(self, response):
        """Seconds a 429 asks us to wait, or None."""
        return _number(response.headers.get("Retry-After"))

    def raise_for_response(self, response):
        """Turn a failed answer into a typed error; return the JSON body of a good one."""
        return typed_answer(response, name=self.name, retry_after=self.retry_after)

    @sensitive_variables("kwargs")
    def request(self, method, url, **kwargs):
        """One request to the provider through ``session``; transport failures typed, the answer as it came."""
        try:
            return self.session().request(method, url, timeout=self.http_timeout, **kwargs)
        except requests.Timeout:
            raise ProviderUnavailable(f"{self.name} did not answer in time.") from None
        except requests.ConnectionError:
            raise ProviderUnavailable(f"{self.name} could not be reached.") from None

    @sensitive_variables("kwargs")
    def call(self, method, url, **kwargs):
        """One request to the provider; the JSON body of a good answer, a typed error otherwise."""
        return self.raise_for_response(self.request(method, url, **kwargs))

    def token_answer(self, body):
        """The token answer (exchange and refresh) as RFC 6749 shapes it, for oauthlib to read.

        Called with the parsed JSON of a 2xx answer, before anything reads
        it; returns the body to use, or raises a ProviderError for an answer
        that is an error in disguise. The default takes it as it is.
        """
        return body

    # --- The account ----------------------------------------------------
    @sensitive_variables("token", "values")
    def profile(self, token, values):
        """Who connected: ``uid`` (required), ``username``, ``display_name``, ``avatar_url``, ``email``.

        ``token`` is the token answer. The default asks ``fetch_profile``
        with its access token; a provider that names the user in the token
        answer reads it from there instead. The framework makes each value
        safe for its column, or refuses the answer.
        """
        return self.fetch_profile(token["access_token"])

    @sensitive_variables("access_token")
    def fetch_profile(self, access_token):
        """The user as ``profile_url`` describes them (OpenID Connect's userinfo names by default)."""
        if not self.profile_url:
            raise NotSupported(f"The {self.name} connector declares no way to read who connected.")
        user = self.call("GET", self.profile_url, headers={"Authorization": f"Bearer {access_token}"})
        if not isinstance(user, dict):
            raise ProviderError(f"{self.name} sent a user that could not be read.")
        uid = user.get("sub", user.get("id"))
        return {
            "uid": str(uid) if isinstance(uid, (str, int)) else None,
            "username": user.get("preferred_username") or user.get("username"),
            "display_name": user.get("name") or user.get("username"),
            "avatar_url": user.get("picture"),
            "email": user.get("email"),
        }

    def server_from_token(self, token, *, params, values):
        """The server the connection added the app to, from the token answer; None when none.

        A dict of ``id``, ``name``, ``permissions`` and ``permissions_granted``
        (whether the provider said which permissions were granted).
        """
        return None

    def describe_permissions(self, value):
        """The names of what a stored permission value allows, for people to read.

        ``value`` is what the connector stored for a server (a string). The
        default names nothing: pages then show the raw value. A connector whose
        provider names its permissions returns those names, in its own order.
        """
        return []

    # --- The operator's tools -------------------------------------------
    def check_credentials(self, values):
        """Prove the stored values against the provider; a list of CheckResult.

        The default checks nothing; the admin then offers no Test credentials
        button (``can_check_credentials``).
        """
        return []

    @property
    def can_check_credentials(self):
        return type(self).check_credentials is not Connector.check_credentials

    def revoke(self, tokens, values, *, scope):
        """End a grant at the provider; ``tokens`` holds its ``access_token`` and ``refresh_token``.

        ``scope`` says how much: REVOKE_TOKEN ends these tokens only (the
        grant a reconnect replaced, one we could not store: whatever else the
        person granted must live on); REVOKE_GRANT ends the person's whole
        authorization of the app (disconnect). A provider that makes no
        difference answers both with the same call. Raises NotSupported by
        default: disconnecting then deletes the account here and tells the
        person to remove the app there.
        """
        raise NotSupported(f"{self.name} offers no way to revoke a grant.")

    def grant_info(self, access_token):
        """How the provider sees a grant: ``{"scopes", "expires"}``; NotSupported by default."""
        raise NotSupported(f"{self.name} does not describe grants.")

    # --- The app at work in a server ---------------------------------------
    def server_channels(self, server, values):
        """Where the app can post in ``server`` (an AccountServer): ``[(id, name), ...]``, best first.

        Raises AccessLost when the app can no longer act there; NotSupported
        by default, and the accounts page then offers no test message.
        """
        raise NotSupported(f"The {self.name} connector cannot list where to post.")

    def send_message(self, server, channel_id, content, values):
        """Post ``content`` in a channel of ``server`` as the app; AccessLost when it can no longer."""
        raise NotSupported(f"The {self.name} connector cannot post messages.")

    @property
    def can_message(self):
        return type(self).send_message is not Connector.send_message

    # --- Events the provider sends -----------------------------------------
    # Whether /webhooks/<provider>/events takes this provider's events; 404 otherwise.
    accepts_events: bool = False

    @property
    def event_headers(self):
        """The shape of the headers a delivery is signed with: {header name: compiled pattern}; none by default.

        The events endpoint reads each of them before anything else does
        (before the body, before ``event_verify``) and refuses the delivery
        with 401 when one is missing, is not ASCII, or does not match its
        pattern in full (``re.fullmatch``). Write the patterns with explicit
        ASCII classes and a bound, ``[0-9]{1,12}`` or ``[0-9a-f]{128}``:
        never ``\\d`` (any script's digits) nor ``str.isdigit`` (which takes
        "²", and 4,301 digits, both of which ``int()`` refuses), so that
        ``event_verify`` and ``event_read`` only ever see a value of the
        declared shape. A connector overrides it with a class attribute.
        """
        return {}

    def event_verify(self, headers, body, values):
        """Prove that the provider sent ``body`` (bytes) with ``headers``; raise EventRefused if not.

        Called before anything reads the body, once every header of
        ``event_headers`` has its declared shape. ``values`` is the stored
        configuration (a key to verify with, say).
        """
        raise EventRefused(f"{self.name} events are not taken here.")

    def event_read(self, headers, body):
        """What a verified delivery says, as a ProviderEvent; unknown events are ``other``.

        Gives the event's ``id`` and ``time`` too when the delivery carries
        them (the body, or a signed header).
        """
        raise EventRefused(f"{self.name} events are not taken here.")

    # The request header holding a delivery's signature: what tells one
    # delivery from another when the provider gives its events no id.
    event_signature_header: str = ""

    def event_key(self, headers, body, event):
        """What tells this delivery from any other, so that each is taken once: text, at most 128 characters.

        Called after ``event_verify`` and ``event_read``. The same delivery
        posted again must give the same key; two different events never the
        same one. The default: the provider's id of the event
        (``event.id``); else the SHA-256 (hex) of the
        ``event_signature_header`` the delivery carries; else that of the
        body. A longer key is stored as its SHA-256.
        """
        if event.id:
            return event.id
        signature = headers.get(self.event_signature_header) if self.event_signature_header else None
        return hashlib.sha256(signature.encode() if signature else body).hexdigest()

    @property
    def removed_reason(self):
        """Stored on an account whose user removed the app at the provider (an event said so)."""
        return f"The app was removed at {self.name}. Reconnect the account to use it again."

    # --- Helpers for the framework ----------------------------------------
    def field(self, key):
        for candidate in self.fields:
            if candidate.key == key:
                return candidate
        raise KeyError(key)

    @property
    def secret_keys(self):
        return {f.key for f in self.fields if f.secret}
