"""Test defaults for the environment, then the project's settings unchanged.

Only values the environment leaves unset are filled in, so CI's
DATABASE_URL (PostgreSQL) still wins. A developer's .env is never read.
"""

import os

os.environ.setdefault("ENV_FILE", "")
os.environ.setdefault("SECRET_KEY", "tests-only-secret-key")
os.environ.setdefault("FIELD_ENCRYPTION_KEY", "u0w1mPrwPqFsoWcqZ3TL5Lr2b7MmFVpVb4C6jkd5DDg=")
os.environ.setdefault("PUBLIC_BASE_URL", "https://backoffice.example.com")
os.environ.setdefault("DATABASE_URL", "sqlite:///:memory:")
# The test client and the live server speak plain HTTP.
os.environ.setdefault("SECURE_SSL_REDIRECT", "false")
os.environ.setdefault("SESSION_COOKIE_SECURE", "false")
os.environ.setdefault("CSRF_COOKIE_SECURE", "false")
# The Discord stand-in speaks plain HTTP on loopback.
os.environ.setdefault("OAUTHLIB_INSECURE_TRANSPORT", "1")

from backoffice.settings import *  # noqa: E402,F401,F403

# Tests render pages without running collectstatic first.
STORAGES = {
    **STORAGES,  # noqa: F405
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# Static files come straight from the apps, as in development.
STATIC_ROOT = None
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True
