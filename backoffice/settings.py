"""Backoffice settings: every value comes from the environment, read here once.

The environment is read through ``environ.Env``; a ``.env`` file (written by
``make run``) fills in what the real environment leaves out. Set ``ENV_FILE``
to another path, or to an empty string to read none (the tests do).
"""

import math
import os
import re
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import environ
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
ENV_FILE = env.str("ENV_FILE", default=str(BASE_DIR / ".env"))
if ENV_FILE and Path(ENV_FILE).is_file():
    env.read_env(ENV_FILE)

DEBUG = env.bool("DEBUG", default=False)


def _required(name, value):
    """With DEBUG off a missing secret setting must stop start-up, loudly."""
    if not value:
        raise ImproperlyConfigured(
            f"{name} is not set. Set it in the environment or in .env "
            f"(`make run` writes a .env with fresh values)."
        )
    return value


SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY and DEBUG:
    SECRET_KEY = "django-insecure-development-only"
_required("SECRET_KEY", SECRET_KEY)

# One Fernet key, or a comma-separated list: the first encrypts, all decrypt.
FIELD_ENCRYPTION_KEY = _required(
    "FIELD_ENCRYPTION_KEY", env.list("FIELD_ENCRYPTION_KEY", default=[])
)
for _position, _key in enumerate(FIELD_ENCRYPTION_KEY, start=1):
    try:
        Fernet(_key)
    except (ValueError, TypeError):
        raise ImproperlyConfigured(
            f"FIELD_ENCRYPTION_KEY: key number {_position} is not a Fernet key "
            "(32 url-safe base64-encoded bytes). Generate one with "
            '`python -c "from cryptography.fernet import Fernet; '
            'print(Fernet.generate_key().decode())"`.'
        ) from None

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])

# Where the site is reached from outside; `manage.py check` insists on https
# with DEBUG off.
PUBLIC_BASE_URL = env.str(
    "PUBLIC_BASE_URL", default="http://127.0.0.1:8000" if DEBUG else ""
).rstrip("/")
_public = urlsplit(PUBLIC_BASE_URL)
CSRF_TRUSTED_ORIGINS = env.list(
    "CSRF_TRUSTED_ORIGINS",
    default=[f"{_public.scheme}://{_public.netloc}"] if _public.netloc else [],
)

# Secure by default outside development; each can be turned off on its own
# (e.g. SECURE_SSL_REDIRECT=false behind a proxy that already redirects).
_production = not DEBUG
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=_production)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=_production)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=_production)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000 if _production else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=_production)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=_production)
SECURE_REFERRER_POLICY = env.str("SECURE_REFERRER_POLICY", default="same-origin")
X_FRAME_OPTIONS = "DENY"
# For a proxy that terminates TLS: "HTTP_X_FORWARDED_PROTO,https".
SECURE_PROXY_SSL_HEADER = tuple(env.list("SECURE_PROXY_SSL_HEADER", default=[])) or None

# One block per connector, under its provider slug: its URLs, its timeout
# and its proxy, read by the connector (``connector.setting("API_BASE_URL")``).
CONNECTORS = {
    "discord": {
        "API_BASE_URL": env.str("DISCORD_API_BASE_URL", default="https://discord.com/api/v10").rstrip("/"),
        "AUTHORIZE_URL": env.str("DISCORD_AUTHORIZE_URL", default="https://discord.com/oauth2/authorize"),
        # Seconds before an outbound request to Discord gives up.
        "HTTP_TIMEOUT": env.float("DISCORD_HTTP_TIMEOUT", default=10.0),
        # Calls to Discord use this proxy when it is set, and only this one:
        # requests' own reading of HTTP(S)_PROXY, NO_PROXY and ~/.netrc is off
        # for them. It scanned the environment and the disk on every call
        # (bench/run.py), and a netrc entry for the host would have replaced
        # the token being sent.
        "PROXY": env.str("DISCORD_PROXY", default=""),
        # Where avatars on the accounts page come from.
        "CDN_URL": env.str("DISCORD_CDN_URL", default="https://cdn.discordapp.com").rstrip("/"),
    },
    "slack": {
        "API_BASE_URL": env.str("SLACK_API_BASE_URL", default="https://slack.com/api").rstrip("/"),
        "AUTHORIZE_URL": env.str("SLACK_AUTHORIZE_URL", default="https://slack.com/oauth/v2/authorize"),
        "HTTP_TIMEOUT": env.float("SLACK_HTTP_TIMEOUT", default=10.0),
        "PROXY": env.str("SLACK_PROXY", default=""),
    },
}

# The local Discord and Slack stand-ins (the standin app), for development
# only: runserver starts them and points every Discord and Slack URL at them.
DISCORD_EMULATOR = env.bool("DISCORD_EMULATOR", default=False)
DISCORD_EMULATOR_PORT = env.int("DISCORD_EMULATOR_PORT", default=8001)
SLACK_EMULATOR_PORT = env.int("SLACK_EMULATOR_PORT", default=8002)
# Where runserver's stand-ins keep their people, grants and keys, so that a
# restart of `make run` leaves connected accounts working (None: memory only).
STANDIN_STATE_PATH = BASE_DIR / ".standin" / "state.json"
if DISCORD_EMULATOR:
    if not DEBUG:
        raise ImproperlyConfigured(
            "DISCORD_EMULATOR is on while DEBUG is off: the local Discord stand-in "
            "is for development only. Turn DISCORD_EMULATOR off in production."
        )
    _standin = f"http://127.0.0.1:{DISCORD_EMULATOR_PORT}"
    CONNECTORS["discord"].update(
        API_BASE_URL=f"{_standin}/api/v10",
        AUTHORIZE_URL=f"{_standin}/oauth2/authorize",
        # The stand-in serves its own avatars.
        CDN_URL=_standin,
    )
    _standin = f"http://127.0.0.1:{SLACK_EMULATOR_PORT}"
    CONNECTORS["slack"].update(
        API_BASE_URL=f"{_standin}/api",
        AUTHORIZE_URL=f"{_standin}/oauth/v2/authorize",
    )
    # oauthlib refuses plain HTTP unless told; the stand-in is on loopback.
    os.environ["OAUTHLIB_INSECURE_TRANSPORT"] = "1"

# Seconds before expiry at which fresh_access_token refreshes a token.
TOKEN_REFRESH_MARGIN = env.int("TOKEN_REFRESH_MARGIN", default=300)
# Seconds a web request may wait in all for a provider's rate limit (the
# callback, Test credentials, admin actions); past that the person is told
# to try again. Commands and sweeps wait longer.
REQUEST_MAX_WAIT = env.float("REQUEST_MAX_WAIT", default=5.0)
# Seconds a refresh waits for its answer. Longer than other calls, since a
# refresh whose answer is lost may have cost the account; keep it below the
# web server's worker timeout (gunicorn: 30 s), since refreshes also run
# inside web requests.
TOKEN_REFRESH_TIMEOUT = env.float("TOKEN_REFRESH_TIMEOUT", default=20.0)
# Seconds during which what a provider has answered (a refreshed pair, a
# grant to revoke) is written again after a database error, on a fresh
# connection each time, before it is given up as LOST. Keep it below the web
# server's worker timeout less TOKEN_REFRESH_TIMEOUT (gunicorn: 30 - 20 = 10).
TOKEN_STORE_RETRY_FOR = env.float("TOKEN_STORE_RETRY_FOR", default=10.0)
# After this many refreshes in a row time out or fail with a 5xx, refreshes
# of that connector pause everywhere for REFRESH_BREAKER_COOLDOWN seconds.
REFRESH_BREAKER_THRESHOLD = env.int("REFRESH_BREAKER_THRESHOLD", default=3)
REFRESH_BREAKER_COOLDOWN = env.int("REFRESH_BREAKER_COOLDOWN", default=60)
# At most this many accounts of one connector are marked needs-reconnect by
# refused refreshes and grant checks within 10 minutes; beyond it the marks are
# held for an operator to confirm or dismiss (connectors.brake).
MARK_BRAKE = env.int("MARK_BRAKE", default=25)

# The HTTP API for other services (the api app): each service key may make
# this many calls, counted in the shared cache: "600/min", "20/s", "10000/h".
API_THROTTLE_RATE = env.str("API_THROTTLE_RATE", default="600/min")
# Refused service keys (wrong, malformed, revoked) one client address may
# present, counted in the shared cache; past it they are answered 429, and a
# valid key is never refused. The address is the one the sign-in lock-out
# reads (LOGIN_IP_HEADER, LOGIN_PROXY_COUNT).
API_AUTH_FAILURE_RATE = env.str("API_AUTH_FAILURE_RATE", default="30/min")
for _name, _rate, _example in (
    ("API_THROTTLE_RATE", API_THROTTLE_RATE, "600/min"),
    ("API_AUTH_FAILURE_RATE", API_AUTH_FAILURE_RATE, "30/min"),
):
    if not re.fullmatch(r"\d+/(s|sec|second|m|min|minute|h|hour|d|day)", _rate):
        raise ImproperlyConfigured(
            f"{_name}={_rate!r} is not a rate such as {_example} (per s, min, hour or day)."
        )
# Service keys only: no session, so no CSRF (made for cookies) and no
# browser's login reaching the API; JSON in and out, whatever Accept says
# (never a 406); errors as {"code", "message"} (api.errors).
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["api.authentication.ServiceKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["api.authentication.HasScope"],
    "DEFAULT_THROTTLE_CLASSES": ["api.throttling.ServiceKeyThrottle"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "api.serializers.JSONWhateverAccepted",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "api.errors.api_exception_handler",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Backoffice API",
    "DESCRIPTION": "Connected accounts and fresh access tokens for services that act for a user.",
    "VERSION": "1",
    # The schema itself is public: it holds nothing a key protects.
    "SERVE_AUTHENTICATION": [],
    "SERVE_INCLUDE_SCHEMA": False,
    # Each status's headers (WWW-Authenticate, Allow, Retry-After) in every operation that answers it.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "api.views.add_response_headers",
    ],
}

# What our pages may load, and where their forms may go (django-csp), enforced
# whatever DEBUG says. No inline script or style anywhere: our CSS is a static
# file, and Django 5.2's admin needs nothing more (it has no inline script or
# style attribute). form-action also allows each connector's consent page
# (connectors.middleware.ContentSecurityPolicy says why). The one page sent
# without the policy is Django's own technical error page (the traceback or
# "page not found" shown with DEBUG on, full of inline style and script):
# django-csp's middleware sends none with a 404 or 500 while DEBUG is on, and
# with DEBUG on Django answers those with its technical pages (no view of
# ours returns one itself). With DEBUG off our 404.html and 500.html answer
# them, with the policy.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        # Each connector's avatar origins are added (ContentSecurityPolicy).
        "img-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
    },
}

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "encrypted_model_fields",
    # Before staticfiles, so that its runserver (which warns when
    # PUBLIC_BASE_URL is elsewhere) takes precedence.
    "connectors",
    "connectors.discord",
    "connectors.slack",
    "django.contrib.staticfiles",
    "csp",
    "rest_framework",
    "drf_spectacular",
    "api",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Before WhiteNoise, so that every response carries both policies; the
    # Permissions-Policy header is our own, the CSP django-csp's.
    "connectors.middleware.PermissionsPolicy",
    "connectors.middleware.ContentSecurityPolicy",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "connectors.middleware.BoundedWaits",
    "connectors.middleware.UnreadableConfiguration",
    "connectors.middleware.OwnFaults",
    "connectors.middleware.NotAllowedPage",
]

ROOT_URLCONF = "backoffice.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

if DISCORD_EMULATOR:
    # Before connectors, so that its runserver, which also starts the stand-in, wins.
    INSTALLED_APPS.insert(INSTALLED_APPS.index("connectors"), "standin")
    TEMPLATES[0]["OPTIONS"]["context_processors"].append("standin.context_processors.banner")

WSGI_APPLICATION = "backoffice.wsgi.application"

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
}
# Opening a connection for every request cost the callback 12 ms of its 29 on
# PostgreSQL and 2 ms on SQLite (bench/run.py); a connection is kept a minute
# and checked before reuse.
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # SQLite has no row locks: IMMEDIATE makes every transaction take the
    # write lock when it starts, so token refreshes still run one at a time.
    # WAL lets pages read while a flow writes; synchronous=NORMAL drops the
    # fsync from each commit (bench/run.py: 4.7 ms of a callback), at the
    # price of the last commits on a power cut, never of a corrupt file.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        transaction_mode="IMMEDIATE",
        timeout=30,
        init_command=f"PRAGMA journal_mode=WAL; PRAGMA synchronous={env.str('SQLITE_SYNCHRONOUS', default='NORMAL')};",
    )

# What several processes and hosts must agree on (the pace of requests to a
# provider) lives in Django's cache. The default, the database cache, needs
# no other server: `manage.py migrate` creates its table. Redis works too:
# CACHE_URL=redis://127.0.0.1:6379/0.
CACHES = {"default": env.cache("CACHE_URL", default="dbcache://backoffice_cache")}
# A cache that is down or hung must cost a request seconds, never a worker:
# CACHE_CONNECT_TIMEOUT bounds opening a connection to it, CACHE_TIMEOUT each
# Redis command or database cache statement. A request that finds it hung
# waits at most two of them (the API's throttle lets the call through, then
# the read that refuses it), which must stay within REQUEST_MAX_WAIT.
CACHE_CONNECT_TIMEOUT = env.float("CACHE_CONNECT_TIMEOUT", default=1.0)
CACHE_TIMEOUT = env.float("CACHE_TIMEOUT", default=2.0)
for _name, _seconds in (("CACHE_CONNECT_TIMEOUT", CACHE_CONNECT_TIMEOUT), ("CACHE_TIMEOUT", CACHE_TIMEOUT)):
    if not _seconds > 0:
        raise ImproperlyConfigured(f"{_name}={_seconds:g} is not a number of seconds above 0.")
if CACHES["default"]["BACKEND"] == "django.core.cache.backends.redis.RedisCache":
    # Django hands OPTIONS to redis-py's connection pool. A timeout the
    # CACHE_URL's query names (?socket_timeout=3) is kept.
    CACHES["default"].setdefault("OPTIONS", {})
    CACHES["default"]["OPTIONS"].setdefault("socket_connect_timeout", CACHE_CONNECT_TIMEOUT)
    CACHES["default"]["OPTIONS"].setdefault("socket_timeout", CACHE_TIMEOUT)
if CACHES["default"]["BACKEND"] == "django.core.cache.backends.db.DatabaseCache":
    # Expired rows go only when the table outgrows this; every write counts
    # the rows, so it is kept small, yet above what is live at once.
    CACHES["default"].setdefault("OPTIONS", {}).setdefault("MAX_ENTRIES", 2000)
    if DATABASES["default"]["ENGINE"] != "django.db.backends.sqlite3":
        # Its own connection, so that a permit taken while a refresh holds
        # its transaction open is seen by every other process at once.
        # SQLite keeps the cache on the one connection: a second one would
        # wait for the write lock that very transaction holds.
        # Its commits need not wait for the disk: what the pace and the breaker
        # keep lasts seconds, and another process sees a commit at once either
        # way (bench/flow.py: a permit cost the callback a second flush).
        # CACHE_CONNECT_TIMEOUT and CACHE_TIMEOUT bound its connection (libpq
        # takes whole seconds, and waits at least 2) and each statement on it;
        # the default connection keeps its own (a refresh may rightly wait for
        # a row lock).
        _cache_options = dict(DATABASES["default"].get("OPTIONS", {}))
        if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
            _cache_options["connect_timeout"] = max(1, math.ceil(CACHE_CONNECT_TIMEOUT))
            _cache_options["options"] = (
                f"{_cache_options.get('options', '')} -c synchronous_commit=off "
                f"-c statement_timeout={max(1, round(CACHE_TIMEOUT * 1000))}"
            ).strip()
        DATABASES["cache"] = {**DATABASES["default"], "OPTIONS": _cache_options, "TEST": {"MIRROR": "default"}}
        DATABASE_ROUTERS = ["connectors.routers.CacheRouter"]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env.path("STATIC_ROOT", default=BASE_DIR / "staticfiles")
# WhiteNoise serves what `collectstatic` gathered, compressed and with
# hashed names that browsers may cache for ever.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "accounts"
LOGOUT_REDIRECT_URL = "login"
# End users may create their own login at /accounts/signup/ (404 while off).
SIGNUP_ENABLED = env.bool("SIGNUP_ENABLED", default=False)
# Sign-up POSTs one client address may make (backoffice.throttles; the address
# as the sign-in lock reads it, LOGIN_IP_HEADER), counted in the shared cache.
SIGNUP_RATE = env.str("SIGNUP_RATE", default="5/h")
if not re.fullmatch(r"\d+/(s|sec|second|m|min|minute|h|hour|d|day)", SIGNUP_RATE):
    raise ImproperlyConfigured(f"SIGNUP_RATE={SIGNUP_RATE!r} is not a rate such as 5/h (per s, min, hour or day).")

# Error reports, the DEBUG page included, hide every stored secret and every
# token: by variable name, by content, and in the request's parameters.
DEFAULT_EXCEPTION_REPORTER = "connectors.debug.SecretsReporter"
DEFAULT_EXCEPTION_REPORTER_FILTER = "connectors.debug.SecretsFilter"

# Mail (users told when an account needs reconnecting): EMAIL_URL as
# django-environ reads it, e.g. smtp+tls://user:password@smtp.example.com:587;
# unset, mails are printed on the console.
vars().update(env.email_url("EMAIL_URL", default="consolemail://"))
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="backoffice@localhost")
# Seconds a mail server may take: a mail is sent within the request that
# caused it (an event must be answered within the provider's few seconds).
EMAIL_TIMEOUT = env.float("EMAIL_TIMEOUT", default=2.0)

# Login throttling (django-axes). LOGIN_FAILURE_LIMIT failed sign-ins for one
# username from one client address, each within the cool-off of the one
# before, lock that pair out of /accounts/login/ and /admin/login/ (the right
# password included) until LOGIN_COOLOFF_MINUTES after the last of them; other
# usernames and other addresses are unaffected, and a success clears the
# count. Refused tries are not counted, so the time our page names holds.
# `manage.py axes_reset` lifts every lock.
INSTALLED_APPS += ["axes"]
# Last: it turns the refusal the backend flags into our page.
MIDDLEWARE += ["axes.middleware.AxesMiddleware"]
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: refuses a locked pair before any password check
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=10)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("LOGIN_COOLOFF_MINUTES", default=60))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_LOCKOUT_CALLABLE = "backoffice.lockout.lockout_response"
# The client address is read by django-ipware (axes's [ipware] extra, the way
# axes documents), from REMOTE_ADDR alone by default: any client can send an
# X-Forwarded-For, and trusting it would let an attacker claim a new address
# for every try. Behind proxies that every request passes, LOGIN_IP_HEADER
# names the header they set, as request.META spells it (HTTP_X_FORWARDED_FOR,
# HTTP_X_REAL_IP), and LOGIN_PROXY_COUNT how many of them add to it: the
# address taken is that many from the right, the one the outermost proxy saw,
# whatever the client wrote before it. Not strict, so a client's own proxy
# lengthening the header does not make the address unreadable.
LOGIN_IP_HEADER = env.str("LOGIN_IP_HEADER", default="")
LOGIN_PROXY_COUNT = env.int("LOGIN_PROXY_COUNT", default=1)
if LOGIN_IP_HEADER and LOGIN_PROXY_COUNT < 1:
    raise ImproperlyConfigured("LOGIN_PROXY_COUNT must be 1 or more with LOGIN_IP_HEADER set.")
AXES_IPWARE_META_PRECEDENCE_ORDER = (LOGIN_IP_HEADER,) if LOGIN_IP_HEADER else ("REMOTE_ADDR",)
# ipware counts the addresses after the client's in the header: one per proxy
# but the last, whose own address is REMOTE_ADDR, not in the header.
AXES_IPWARE_PROXY_COUNT = LOGIN_PROXY_COUNT - 1 if LOGIN_IP_HEADER else None
IPWARE_STRICT = False

# One line per OAuth event under the "connectors" loggers. The HTTP libraries
# log request bodies, headers and tokens at DEBUG, so they never go below
# WARNING, whatever LOG_LEVEL says.
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "line": {"format": "{asctime} {levelname} {name}: {message}", "style": "{"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "line"},
    },
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        # Restated without Django's own console handler, so that its lines
        # (runserver's "Watching for file changes") reach the root's once.
        "django": {"level": "INFO"},
        "connectors": {"level": LOG_LEVEL},
        "api": {"level": LOG_LEVEL},
        "requests_oauthlib": {"level": "WARNING"},
        "oauthlib": {"level": "WARNING"},
        "urllib3": {"level": "WARNING"},
    },
}
