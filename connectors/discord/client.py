"""Every HTTP request to Discord goes through this module.

One ``requests`` session per process, with a transport adapter that honours
Discord's rate limits (topics/rate-limits): it waits out a 429 for as long as
Discord asks, a bounded number of times, and slows down before the bucket is
empty. Failures come out as the typed errors of ``connectors.exceptions``,
whose messages never carry a token, a secret or a raw body.
"""

import threading
import time

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter

from connectors.exceptions import (
    InvalidGrant,
    ProviderError,
    ProviderRejected,
    ProviderUnavailable,
    RateLimited,
    Unauthorized,
)

USER_AGENT = "DiscordBot (https://github.com/backoffice/backoffice, 1.0)"

# resources/user: Get Current User (Bearer with `identify`, or Bot).
CURRENT_USER = "/users/@me"
# resources/user: Get Current User Guilds (Bearer with `guilds`).
CURRENT_USER_GUILDS = "/users/@me/guilds"
# topics/oauth2: Get Current Authorization Information (Bearer).
CURRENT_AUTHORIZATION = "/oauth2/@me"
# resources/application: Get Current Application (Bot).
CURRENT_APPLICATION = "/oauth2/applications/@me"
# topics/oauth2: token and revocation endpoints.
TOKEN = "/oauth2/token"
TOKEN_REVOKE = "/oauth2/token/revoke"


class RateLimitAdapter(HTTPAdapter):
    """Waits instead of failing when Discord says to slow down.

    Kept in the adapter so that the REST calls and requests-oauthlib's token
    calls, which build their own requests, share one pool and one pace.
    """

    def __init__(self, *, max_retries_429=3, max_wait=60.0, sleep=time.sleep, **kwargs):
        super().__init__(**kwargs)
        self.max_retries_429 = max_retries_429
        self.max_wait = max_wait
        self.sleep = sleep
        self._lock = threading.Lock()
        self._resume_at = 0.0

    def _pause_until_allowed(self):
        with self._lock:
            wait = self._resume_at - time.monotonic()
        if wait > 0:
            self.sleep(wait)

    def _note_headers(self, response):
        """When the bucket is empty, hold later requests until it resets."""
        remaining = response.headers.get("X-RateLimit-Remaining")
        reset_after = response.headers.get("X-RateLimit-Reset-After")
        if remaining is None or reset_after is None:
            return
        try:
            if int(remaining) > 0:
                return
            resume = time.monotonic() + min(float(reset_after), self.max_wait)
        except ValueError:
            return
        with self._lock:
            self._resume_at = max(self._resume_at, resume)

    def send(self, request, **kwargs):
        for attempt in range(self.max_retries_429 + 1):
            self._pause_until_allowed()
            response = super().send(request, **kwargs)
            self._note_headers(response)
            if response.status_code != 429 or attempt == self.max_retries_429:
                return response
            wait = retry_after(response)
            if wait is None or wait > self.max_wait:
                return response
            response.close()
            with self._lock:
                self._resume_at = max(self._resume_at, time.monotonic() + wait)
        return response


def retry_after(response):
    """Seconds Discord asks us to wait: the body's retry_after, else the header."""
    try:
        return float(response.json()["retry_after"])
    except (ValueError, KeyError, TypeError):
        pass
    try:
        return float(response.headers["Retry-After"])
    except (KeyError, ValueError):
        return None


_adapter = RateLimitAdapter(pool_connections=4, pool_maxsize=32)
_local = threading.local()


def mount(session):
    """Give any session (requests-oauthlib's included) the shared adapter and our proxy.

    The environment has no say (settings.DISCORD_PROXY explains why).
    """
    session.mount("http://", _adapter)
    session.mount("https://", _adapter)
    session.headers["User-Agent"] = USER_AGENT
    session.trust_env = False
    if settings.DISCORD_PROXY:
        session.proxies = {"http": settings.DISCORD_PROXY, "https": settings.DISCORD_PROXY}
    return session


def shared_session():
    """One session per thread: requests.Session is not thread-safe, the pool is shared."""
    session = getattr(_local, "session", None)
    if session is None:
        session = _local.session = mount(requests.Session())
    return session


def raise_for_response(response):
    """Turn a failed Discord answer into a typed error; return the JSON body otherwise."""
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = None
    if status == 429:
        raise RateLimited(
            "Discord is rate limiting these requests; try again shortly.",
            retry_after=retry_after(response),
        )
    if status >= 500:
        raise ProviderUnavailable(f"Discord answered with a server error (HTTP {status}); try again later.")
    if status >= 400:
        body = body if isinstance(body, dict) else {}
        error = body.get("error")
        code = body.get("code")
        if error == "invalid_grant":
            raise InvalidGrant("Discord no longer accepts this grant (invalid_grant).", status=status)
        if status == 401 or error == "invalid_client":
            raise Unauthorized(
                f"Discord refused the credentials (HTTP {status}, {error or 'unauthorized'}).",
                status=status,
                code=code,
            )
        raise ProviderRejected(
            f"Discord refused the request (HTTP {status}, {error or code or 'error'}).",
            status=status,
            code=code,
        )
    if body is None:
        raise ProviderError(f"Discord answered HTTP {status} with a body that is not JSON.")
    return body


def send(method, path, *, headers=None, session=None, **kwargs):
    """One request to the REST API, with the configured base URL and timeout."""
    session = session or shared_session()
    try:
        response = session.request(
            method,
            settings.DISCORD_API_BASE_URL + path,
            headers=headers,
            timeout=settings.DISCORD_HTTP_TIMEOUT,
            **kwargs,
        )
    except requests.Timeout:
        raise ProviderUnavailable("Discord did not answer in time.") from None
    except requests.ConnectionError:
        raise ProviderUnavailable("Discord could not be reached.") from None
    return raise_for_response(response)


def bearer(access_token):
    return {"Authorization": f"Bearer {access_token}"}


def bot(bot_token):
    return {"Authorization": f"Bot {bot_token}"}


def current_user(headers):
    return send("GET", CURRENT_USER, headers=headers)


def current_user_guilds(access_token):
    return send("GET", CURRENT_USER_GUILDS, headers=bearer(access_token))


def current_authorization(access_token):
    return send("GET", CURRENT_AUTHORIZATION, headers=bearer(access_token))


def current_application(bot_token):
    return send("GET", CURRENT_APPLICATION, headers=bot(bot_token))


def revoke(token, *, client_id, client_secret, token_type_hint=None):
    data = {"token": token}
    if token_type_hint:
        data["token_type_hint"] = token_type_hint
    return send("POST", TOKEN_REVOKE, data=data, auth=(client_id, client_secret))
