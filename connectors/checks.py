"""System checks: ``manage.py check`` (and every start-up) reports what would break."""

from urllib.parse import urlsplit

from django.conf import settings
from django.core import checks
from django.db import DatabaseError
from django.urls import Resolver404, resolve

from .crypto import stored_values_unreadable
from .registry import registry

UNREADABLE_HINT = (
    "Put the key they were written with back into FIELD_ENCRYPTION_KEY "
    "(comma-separated: the first key encrypts, all decrypt), then run "
    "`manage.py rotate_encryption_key` before dropping it."
)
# What the log says when a page meets such a value.
UNREADABLE_MESSAGE = f"stored values do not decrypt under any key in FIELD_ENCRYPTION_KEY. {UNREADABLE_HINT}"

# How many rows of each encrypted table a check decrypts: enough to catch a
# wrong key, few enough that start-up does not slow down with the data.
CHECK_SAMPLE = 20


@checks.register()
def check_stored_values_decrypt(app_configs=None, databases=None, **kwargs):
    try:
        unreadable = stored_values_unreadable(sample=CHECK_SAMPLE)
    except DatabaseError:
        # No database to read (yet): nothing stored can be unreadable.
        return []
    return [
        checks.Error(
            f"Stored {model._meta.verbose_name_plural} do not decrypt under any key in "
            "FIELD_ENCRYPTION_KEY.",
            hint=UNREADABLE_HINT,
            obj=model,
            id="connectors.E001",
        )
        for model in unreadable
    ]


@checks.register(checks.Tags.security)
def check_public_base_url(app_configs=None, **kwargs):
    url = settings.PUBLIC_BASE_URL
    if not url:
        return [
            checks.Error(
                "PUBLIC_BASE_URL is not set.",
                hint="Set it to the address people reach this site at, e.g. "
                "https://backoffice.example.com; every connector's redirect URL is built from it.",
                id="connectors.E002",
            )
        ]
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return [
            checks.Error(
                f"PUBLIC_BASE_URL ({url}) is not an absolute http(s) URL.",
                hint="Give scheme and host, e.g. https://backoffice.example.com.",
                id="connectors.E003",
            )
        ]
    if parts.scheme != "https" and not settings.DEBUG:
        return [
            checks.Error(
                f"PUBLIC_BASE_URL ({url}) is not https while DEBUG is off.",
                hint="OAuth codes and session cookies must not travel in clear: serve the "
                "site over https and set PUBLIC_BASE_URL to its https address.",
                id="connectors.E003",
            )
        ]
    return []


@checks.register()
def check_redirect_urls_are_served(app_configs=None, **kwargs):
    """The redirect URL registered at the provider must reach our callback view."""
    if not settings.PUBLIC_BASE_URL:
        return []
    from .views import callback

    errors = []
    prefix = (settings.FORCE_SCRIPT_NAME or "").rstrip("/")
    for connector in registry:
        url = connector.redirect_url()
        path = urlsplit(url).path
        try:
            served = path.startswith(prefix) and resolve(path[len(prefix):]).func is callback
        except Resolver404:
            served = False
        if not served:
            errors.append(
                checks.Error(
                    f"The {connector.name} redirect URL {url} is not a path this site serves.",
                    hint="PUBLIC_BASE_URL must be the site's root (add FORCE_SCRIPT_NAME "
                    "when it is served under a path prefix).",
                    obj=connector.service_id,
                    id="connectors.E004",
                )
            )
    return errors
