"""Every HTTP request to Discord goes through this module.

One ``requests`` session per thread on one shared pool, with a transport
adapter that keeps Discord's rate limits (topics/rate-limits) in step with
every other worker, process and host: each request waits for a permit from
the shared pace (``connectors.ratelimit``), and what each answer says of the
limits goes back into it. A 429 is waited out a bounded number of times.
Failures come out as the typed errors of ``connectors.exceptions``, whose
messages never carry a token, a secret or a raw body.
"""

import math
import re
import threading
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.views.decorators.debug import sensitive_variables
from requests.adapters import HTTPAdapter

from connectors.base import typed_answer
from connectors.exceptions import ProviderUnavailable
from connectors.cache import after_answer, before_call
from connectors.ratelimit import Limits, Pace, is_held, is_unpaced

USER_AGENT = "DiscordBot (https://github.com/backoffice/backoffice, 1.0)"

# resources/user: Get Current User (Bearer with `identify`, or Bot).
CURRENT_USER = "/users/@me"
# resources/user: Get Current User Guilds (Bearer with `guilds`).
CURRENT_USER_GUILDS = "/users/@me/guilds"
# topics/oauth2: Get Current Authorization Information (Bearer).
CURRENT_AUTHORIZATION = "/oauth2/@me"
# resources/application: Get Current Application (Bot).
CURRENT_APPLICATION = "/oauth2/applications/@me"
# resources/guild: Get Guild Channels; resources/message: Create Message (Bot).
GUILD_CHANNELS = "/guilds/{}/channels"
CHANNEL_MESSAGES = "/channels/{}/messages"
# topics/oauth2: token and revocation endpoints.
TOKEN = "/oauth2/token"
TOKEN_REVOKE = "/oauth2/token/revoke"

# topics/rate-limits: a route's limits are counted apart for each value of
# its major parameter (a channel, a guild, a webhook); other ids share them.
MAJOR = re.compile(r"/(channels|guilds|webhooks)/(\d+)")
SNOWFLAKE = re.compile(r"/\d{5,}")


def route_and_scope(request):
    """The route (which bucket) and the scope (whose counter) of a request.

    Discord counts a bucket per token and per major parameter, so the
    credential sent and the major ids make the scope; the pace keeps only a
    digest of it.
    """
    path = urlsplit(request.url).path
    majors = "".join(match.group(0) for match in MAJOR.finditer(path))
    route = f"{request.method} {SNOWFLAKE.sub('/{id}', path)}"
    return route, f"{request.headers.get('Authorization', '')}|{majors}"


def is_shared(request):
    """Whether others may send with this request's credential at the same time.

    A person's Bearer token is sent only by the code that holds their
    account (a refresh or a check, under the row's lock, or the flow that
    has just received it); the application's credentials and the bot token
    are sent by every worker at once.
    """
    return not request.headers.get("Authorization", "").startswith("Bearer ")


def setting(name):
    """A value of Discord's block in settings.CONNECTORS."""
    return settings.CONNECTORS["discord"][name]


def _number(value, kind):
    try:
        number = kind(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number >= 0 else None


def limits_of(response):
    """The X-RateLimit headers of an answer; an odd or missing value is None."""
    headers = response.headers
    bucket = headers.get("X-RateLimit-Bucket")
    reset = headers.get("X-RateLimit-Reset")
    return Limits(
        bucket=bucket[:100] if bucket else None,
        reset=reset[:32] if _number(reset, float) is not None else None,
        limit=_number(headers.get("X-RateLimit-Limit"), int),
        remaining=_number(headers.get("X-RateLimit-Remaining"), int),
        reset_after=_number(headers.get("X-RateLimit-Reset-After"), float),
    )


def is_global(response):
    """A 429 of the global limit: every route waits, not only this bucket."""
    headers = response.headers
    if headers.get("X-RateLimit-Global", "").lower() == "true":
        return True
    if headers.get("X-RateLimit-Scope", "").lower() == "global":
        return True
    try:
        return response.json().get("global") is True
    except (ValueError, AttributeError):
        return False


class RateLimitAdapter(HTTPAdapter):
    """Sends a request only with a permit of the shared pace, and feeds it the answer.

    Kept in the adapter so that the REST calls and requests-oauthlib's token
    calls, which build their own requests, share one pool and one pace. A
    429 is waited out (through the pace, which every process then honours)
    up to ``max_retries_429`` times, never inside ``ratelimit.held_briefly``;
    a permit further off than ``max_wait`` seconds raises RateLimited
    without sending.
    """

    def __init__(self, *, pace=None, max_retries_429=3, max_wait=60.0, **kwargs):
        super().__init__(**kwargs)
        self.pace = pace or Pace("discord")
        self.max_retries_429 = max_retries_429
        self.max_wait = max_wait

    def send(self, request, **kwargs):
        if is_unpaced():
            return super().send(request, **kwargs)
        route, scope = route_and_scope(request)
        shared = is_shared(request)
        for attempt in range(self.max_retries_429 + 1):
            with before_call("the rate-limit pace"):
                permit = self.pace.acquire(route, scope, max_wait=self.max_wait, shared=shared)
            try:
                response = super().send(request, **kwargs)
            except BaseException:
                with after_answer("releasing a rate-limit permit"):
                    self.pace.release(permit)
                raise
            limits = limits_of(response)
            if response.status_code != 429:
                with after_answer("the rate-limit pace's bookkeeping"):
                    self.pace.observe(permit, limits)
                return response
            with after_answer("the rate-limit pace's bookkeeping"):
                self.pace.refused(
                    permit, limits, retry_after=retry_after(response), is_global=is_global(response)
                )
            if attempt == self.max_retries_429 or is_held():
                return response
            response.close()
        return response


def retry_after(response):
    """Seconds Discord asks us to wait: the body's retry_after, else the header."""
    try:
        return _number(response.json()["retry_after"], float)
    except (ValueError, KeyError, TypeError):
        pass
    return _number(response.headers.get("Retry-After"), float)


_adapter = RateLimitAdapter(pool_connections=4, pool_maxsize=32)
_local = threading.local()


def mount(session):
    """Give any session (requests-oauthlib's included) the shared adapter and our proxy.

    The environment has no say (the PROXY setting explains why).
    """
    session.mount("http://", _adapter)
    session.mount("https://", _adapter)
    session.headers["User-Agent"] = USER_AGENT
    session.trust_env = False
    proxy = setting("PROXY")
    if proxy:
        session.proxies = {"http": proxy, "https": proxy}
    return session


def shared_session():
    """One session per thread: requests.Session is not thread-safe, the pool is shared."""
    session = getattr(_local, "session", None)
    if session is None:
        session = _local.session = mount(requests.Session())
    return session


def raise_for_response(response):
    """Turn a failed Discord answer into a typed error; return the JSON body otherwise."""
    return typed_answer(response, name="Discord", retry_after=retry_after)


@sensitive_variables("headers", "kwargs")
def send(method, path, *, headers=None, session=None, **kwargs):
    """One request to the REST API, with the configured base URL and timeout."""
    session = session or shared_session()
    try:
        response = session.request(
            method,
            setting("API_BASE_URL") + path,
            headers=headers,
            timeout=setting("HTTP_TIMEOUT"),
            **kwargs,
        )
    except requests.Timeout:
        raise ProviderUnavailable("Discord did not answer in time.") from None
    except requests.ConnectionError:
        raise ProviderUnavailable("Discord could not be reached.") from None
    return raise_for_response(response)


@sensitive_variables("access_token")
def bearer(access_token):
    return {"Authorization": f"Bearer {access_token}"}


@sensitive_variables("bot_token")
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


@sensitive_variables("token", "client_secret", "data")
def revoke(token, *, client_id, client_secret, token_type_hint=None):
    data = {"token": token}
    if token_type_hint:
        data["token_type_hint"] = token_type_hint
    return send("POST", TOKEN_REVOKE, data=data, auth=(client_id, client_secret))
