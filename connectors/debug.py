"""Error reports that hold no secret or token, DEBUG page included.

Django's own filter only acts with DEBUG off and only on what the
``sensitive_*`` decorators name. This one always acts, and in every frame
of the traceback and in the request's data it replaces with Django's
substitute the value (never the name) of:

- a variable or parameter whose name says secret (token, secret, code, ...);
- a value whose text holds a stored connector secret, a secret parameter of
  this request (``code``, ``state``), the credential of its ``Authorization``
  header, or a token found in the traceback;
- a value that looks like a token answer or an authorization header.

The request itself is shown with those parameters replaced.
"""

import re
import weakref
from collections.abc import Mapping
from contextlib import nullcontext
from urllib.parse import quote

from django.db import connection, transaction
from django.http import HttpRequest
from django.views.debug import ExceptionReporter, SafeExceptionReporterFilter

# A name is secret when it contains one of these ...
SECRET_IN_NAME = ("token", "secret", "passw", "cookie", "csrf", "signature", "credential")
# ... or when one of its parts (split at "_" and at camelCase) is one of these.
SECRET_NAME_PARTS = {
    "auth", "authorization", "code", "state", "key", "keys", "body", "answer", "values", "params",
    "data", "headers", "grant",
}
# Text that only a token answer, a token request or an authorization header holds.
SECRET_TEXT = re.compile(
    r"access_token|refresh_token|id_token|client_secret|['\"]authorization['\"]"
    r"|\b(?:bearer|bot|basic) [\w.~+/=-]{16,}",
    re.IGNORECASE,
)
# Shorter values are not looked for in other values: they would hide everything.
MIN_SECRET_LENGTH = 8


def secret_name(name):
    if not isinstance(name, str):
        return False
    lowered = name.lower()
    if any(word in lowered for word in SECRET_IN_NAME):
        return True
    parts = re.findall(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])", name)
    return any(part.lower() in SECRET_NAME_PARTS for part in parts)


def _holds_secret_value(key):
    """A key of a token answer, a token request or an object holding a grant."""
    key = str(key).lower()
    return key == "code" or any(word in key for word in ("token", "secret", "passw"))


class Shown:
    """A value shown as the given text (the report prints ``repr``)."""

    def __init__(self, text):
        self.text = text

    def __repr__(self):
        return self.text


class SecretsFilter(SafeExceptionReporterFilter):
    """Django's filter, active whatever DEBUG says, that also hides by name and by content."""

    def __init__(self):
        super().__init__()
        self._stored = weakref.WeakKeyDictionary()

    def is_active(self, request):
        return True

    # What is known to be secret.

    def stored_secrets(self):
        """Every stored secret value of every connector; a connector that cannot be read is skipped."""
        from .config import config_values
        from .registry import registry

        found = set()
        for connector in registry:
            try:
                # Inside a transaction (a test's), a failed read must not break it. Outside
                # one, no transaction: on SQLite it would wait for the write lock.
                with transaction.atomic() if connection.in_atomic_block else nullcontext():
                    values = config_values(connector.service_id)
            except Exception:  # a wrong key, a database that fails: hide what can be hidden
                continue
            found.update(str(values[key]) for key in connector.secret_keys if values.get(key))
        return found

    def request_secrets(self, request):
        """Stored secrets and this request's secret parameters; read once per request."""
        if request is None:
            return self.stored_secrets()
        try:
            return self._stored[request]
        except KeyError:
            pass
        found = self.stored_secrets()
        # Whatever the request authenticated with (an API key, a bearer token)
        # is hidden wherever it turns up, under any name.
        credential = getattr(request, "META", {}).get("HTTP_AUTHORIZATION", "").partition(" ")[2].strip()
        if credential:
            found.add(credential)
        for data in (getattr(request, "GET", {}), getattr(request, "POST", {})):
            for name, values in data.lists():
                if secret_name(name):
                    found.update(str(value) for value in values)
        self._stored[request] = found
        return found

    def frame_secrets(self, tb_frame):
        """Secret values held by the frame and its callers: in mappings and in attributes."""
        found = set()
        frame = tb_frame
        while frame is not None:
            for value in list(frame.f_locals.values()):
                try:
                    items = value if isinstance(value, Mapping) else getattr(value, "__dict__", None)
                    if isinstance(items, Mapping):
                        found.update(
                            item
                            for key, item in list(items.items())
                            if isinstance(item, str) and _holds_secret_value(key)
                        )
                except Exception:  # an odd object: its value is still judged by name and text
                    continue
            frame = frame.f_back
        return {secret for secret in found if len(secret) >= MIN_SECRET_LENGTH}

    def holds_secret(self, value, secrets):
        if isinstance(value, Shown):
            return False
        try:
            text = repr(value)
        except Exception:
            return False
        if isinstance(value, bytes):
            text += value.decode("utf-8", "replace")
        elif isinstance(value, str):
            text += value
        if SECRET_TEXT.search(text):
            return True
        return any(
            secret in text or quote(secret, safe="") in text
            for secret in secrets
            if len(secret) >= MIN_SECRET_LENGTH
        )

    # The report's parts.

    def cleanse(self, name, value, secrets):
        if isinstance(value, str) and value == self.cleansed_substitute:
            return value
        if isinstance(value, HttpRequest):
            return Shown(f"<{type(value).__name__}: {value.method} {self.safe_path(value)!r}>")
        if secret_name(name) or self.holds_secret(value, secrets):
            return self.cleansed_substitute
        return value

    def get_traceback_frame_variables(self, request, tb_frame):
        secrets = self.request_secrets(request) | self.frame_secrets(tb_frame)
        return [
            (name, self.cleanse(name, value, secrets))
            for name, value in super().get_traceback_frame_variables(request, tb_frame)
        ]

    def get_cleansed_multivaluedict(self, request, multivaluedict):
        multivaluedict = super().get_cleansed_multivaluedict(request, multivaluedict).copy()
        secrets = self.request_secrets(request)
        for name, values in multivaluedict.lists():
            if secret_name(name) or any(self.holds_secret(value, secrets) for value in values):
                multivaluedict[name] = self.cleansed_substitute
        return multivaluedict

    def get_post_parameters(self, request):
        if request is None:
            return {}
        return self.get_cleansed_multivaluedict(request, super().get_post_parameters(request))

    def get_query_parameters(self, request):
        return self.get_cleansed_multivaluedict(request, request.GET)

    def get_safe_request_meta(self, request):
        secrets = self.request_secrets(request)
        return {
            name: self.cleanse(name, value, secrets)
            for name, value in super().get_safe_request_meta(request).items()
        }

    def safe_path(self, request):
        """The request's path with its secret parameters replaced."""
        query = "&".join(
            f"{quote(name)}={value if value == self.cleansed_substitute else quote(value)}"
            for name, value in self.get_query_parameters(request).items()
        )
        return request.path + (f"?{query}" if query else "")

    def redact(self, text, secrets):
        """``text`` with each of ``secrets`` in it replaced."""
        for secret in sorted(secrets, key=len, reverse=True):
            if len(secret) >= MIN_SECRET_LENGTH:
                text = text.replace(secret, self.cleansed_substitute)
        return text


class SecretsReporter(ExceptionReporter):
    """Shows the request's query and URL, and the exception's text, through the filter."""

    def get_traceback_data(self):
        data = super().get_traceback_data()
        if not isinstance(self.filter, SecretsFilter):
            return data
        if self.request is not None:
            data["request_GET_items"] = self.filter.get_query_parameters(self.request).items()
            data["request_insecure_uri"] = "{scheme}://{host}{path}".format(
                scheme=self.request.scheme,
                host=self.request._get_raw_host(),
                path=self.filter.safe_path(self.request),
            )
        # An exception's text is shown whole: the known secrets in it are replaced.
        secrets = set(self.filter.request_secrets(self.request))
        for frame in data["frames"]:
            if frame.get("tb") is not None:
                secrets |= self.filter.frame_secrets(frame["tb"].tb_frame)
        if "exception_value" in data:
            data["exception_value"] = self.filter.redact(data["exception_value"], secrets)
        for frame in data["frames"]:
            if frame.get("exc_cause") is not None:
                frame["exc_cause"] = self.filter.redact(str(frame["exc_cause"]), secrets)
        return data
