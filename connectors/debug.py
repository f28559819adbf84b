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

Infrastructure credentials are hidden too, in the settings, in ``request.META``
(runserver copies the environment there), in the frames, in the exception's
text and in the source lines shown:

- the userinfo of any URL (``redis://:password@host`` becomes
  ``redis://********************@host``: scheme, host and port stay shown), and
  of the bare ``user:password@host`` form;
- the value of a ``password=`` parameter (a libpq DSN, a query string);
- wherever it appears, a known password: the password part of every URL in the
  settings, in the environment and in the request's environment entries, and the
  value of every setting or entry named as a password (``DATABASES``' ``PASSWORD``,
  ``EMAIL_HOST_PASSWORD``, ``PGPASSWORD``, ...), in clear or percent-encoded.

Settings whose name the secret rule above covers are hidden as a whole, as
Django hides its own (``SECRET_KEY``, ``*_PASSWORD``, ...).
"""

import os
import re
import weakref
from collections.abc import Mapping
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from urllib.parse import quote, unquote

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

# The userinfo of a URL: everything between "scheme://" and the last "@" before the host.
# (Each pattern starts only where a scheme or a value can start, so that long text is
# searched in linear time.)
URL_USERINFO = re.compile(
    r"(?<![a-zA-Z0-9+.\-])(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<userinfo>[^\s/?#'\"<>\\]*)@"
)
# The bare form some tools take (user:password@host:port): at the start of a value or after
# a space, quote, "=", "(", "[", "," or ";". Not "mailto:someone@host".
BARE_USERINFO = re.compile(
    r"(?<![^\s'\"=(\[,;])(?!mailto:)(?P<userinfo>[^\s/?#'\"<>\\:@=(\[,;]*:[^\s/?#'\"<>\\@=(\[,;]*)@(?=[\w\[])",
    re.IGNORECASE,
)
# A password given as a parameter: a libpq DSN (password=...), a query string.
PASSWORD_PARAMETER = re.compile(
    r"(?P<name>\b(?:password|passwd|pwd|pass)\s*=\s*)(?P<value>'[^']*'|\"[^\"]*\"|[^\s&;,'\")\]}]+)",
    re.IGNORECASE,
)
# A setting, an environment variable or a key whose value is a password (PASSWORD,
# EMAIL_HOST_PASSWORD, PGPASSWORD, MYSQL_PWD, REDIS_PASS; not BYPASS).
PASSWORD_NAME = re.compile(r"passw(?:or)?d$|(?:^|_)(?:pwd|pass)$", re.IGNORECASE)
# Entries of request.META that the client writes (its headers, its URL): no password is
# taken from them, or a client could choose what its own report hides.
CLIENT_META = re.compile(r"HTTP_|QUERY_STRING$|PATH_INFO$|REQUEST_URI$|RAW_URI$|CONTENT_")
# How deep the settings are searched for passwords.
MAX_DEPTH = 8

# The known infrastructure passwords while one report (or one part of it) is made:
# found once, not for each of the hundreds of values it shows.
_known_passwords = ContextVar("known_passwords", default=None)


def is_text(value):
    """A real string: not a lazy object posing as one (reading it could run code)."""
    return issubclass(type(value), str)


def url_passwords(text):
    """The password parts of the URLs (and bare user:password@host forms) in text."""
    found = set()
    for pattern in (URL_USERINFO, BARE_USERINFO):
        for match in pattern.finditer(text):
            _, colon, password = match["userinfo"].partition(":")
            if colon and password:
                found.update({password, unquote(password)})
    return found


def passwords_in(value, name="", depth=0):
    """The passwords a setting holds: in its URLs, and under names that say password."""
    found = set()
    if depth > MAX_DEPTH:
        return found
    if is_text(value):
        if is_text(name) and PASSWORD_NAME.search(name) and value:
            found.add(value)
        found |= url_passwords(value)
    elif isinstance(value, Mapping):
        for key, item in list(value.items()):
            found |= passwords_in(item, key, depth + 1)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for item in list(value):
            found |= passwords_in(item, name, depth + 1)
    return found


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

    def infrastructure_passwords(self, request=None):
        """The passwords of the settings, of the environment and of the request's environment.

        Inside a report (``knowing``), the ones found for it.
        """
        known = _known_passwords.get()
        if known is not None:
            return known
        from django.conf import settings

        found = set()
        for name in dir(settings):
            if name.isupper():
                try:
                    found |= passwords_in(getattr(settings, name), name)
                except Exception:  # a setting that cannot be read: the others still count
                    continue
        found |= passwords_in(dict(os.environ))
        # runserver's environment, in the request; not what the client wrote.
        meta = getattr(request, "META", None)
        if isinstance(meta, Mapping):
            found |= passwords_in({k: v for k, v in meta.items() if not CLIENT_META.match(str(k))})
        return frozenset(found)

    def frame_passwords(self, tb_frame):
        """Passwords of the URLs the frame and its callers hold, as values or in mappings."""
        found = set()
        frame = tb_frame
        while frame is not None:
            for value in list(frame.f_locals.values()):
                try:
                    if is_text(value):
                        found |= url_passwords(value)
                    elif isinstance(value, Mapping):
                        found |= passwords_in(value, depth=MAX_DEPTH - 1)
                except Exception:  # an odd mapping: its value is still judged by its text
                    continue
            frame = frame.f_back
        return frozenset(found)

    @contextmanager
    def knowing(self, passwords):
        """Within it, ``infrastructure_passwords`` answers ``passwords`` (an outer report's win)."""
        if _known_passwords.get() is not None:
            yield
            return
        token = _known_passwords.set(frozenset(passwords))
        try:
            yield
        finally:
            _known_passwords.reset(token)

    def mask(self, text, passwords, parameters=True):
        """``text`` without URL userinfo, password parameters and known passwords."""
        hidden = self.cleansed_substitute
        text = URL_USERINFO.sub(lambda m: f"{m['scheme']}{hidden}@" if m["userinfo"] else m[0], text)
        text = BARE_USERINFO.sub(f"{hidden}@", text)
        if parameters:
            text = PASSWORD_PARAMETER.sub(
                lambda m: m[0] if m["value"] == hidden else f"{m['name']}{hidden}", text
            )
        for password in sorted(passwords, key=len, reverse=True):
            if len(password) >= MIN_SECRET_LENGTH:
                text = text.replace(password, hidden).replace(quote(password, safe=""), hidden)
        return text

    def without_credentials(self, value, passwords):
        """A string masked; another value shown as its masked ``repr`` when that differs."""
        if is_text(value):
            return self.mask(value, passwords)
        if isinstance(value, (Shown, int, float, bool, type(None))):
            return value
        try:
            text = repr(value)
        except Exception:
            return value
        if isinstance(value, bytes):
            text = repr(value.decode("utf-8", "replace"))
        masked = self.mask(text, passwords)
        return value if masked == text else Shown(masked)

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

    def cleanse(self, name, value, secrets, passwords=None):
        if isinstance(value, str) and value == self.cleansed_substitute:
            return value
        if isinstance(value, HttpRequest):
            return Shown(f"<{type(value).__name__}: {value.method} {self.safe_path(value)!r}>")
        if secret_name(name) or self.holds_secret(value, secrets):
            return self.cleansed_substitute
        if passwords is None:
            passwords = self.infrastructure_passwords()
        return self.without_credentials(value, passwords)

    def cleanse_setting(self, key, value):
        """Django's, and also: a name the secret rule covers, URL userinfo, known passwords."""
        if _known_passwords.get() is None:
            with self.knowing(self.infrastructure_passwords()):
                return self.cleanse_setting(key, value)
        if secret_name(key):
            return self.cleansed_substitute
        cleansed = super().cleanse_setting(key, value)
        if isinstance(cleansed, (dict, list, tuple)):  # their items were cleansed one by one
            return cleansed
        return self.without_credentials(cleansed, self.infrastructure_passwords())

    def get_safe_settings(self):
        with self.knowing(self.infrastructure_passwords()):
            return super().get_safe_settings()

    def get_safe_cookies(self, request):
        with self.knowing(self.infrastructure_passwords(request)):
            return super().get_safe_cookies(request)

    def get_traceback_frame_variables(self, request, tb_frame):
        secrets = self.request_secrets(request) | self.frame_secrets(tb_frame)
        passwords = self.infrastructure_passwords(request)
        if _known_passwords.get() is None:  # a report has found the frames' passwords already
            passwords |= self.frame_passwords(tb_frame)
        return [
            (name, self.cleanse(name, value, secrets, passwords))
            for name, value in super().get_traceback_frame_variables(request, tb_frame)
        ]

    def get_cleansed_multivaluedict(self, request, multivaluedict):
        multivaluedict = super().get_cleansed_multivaluedict(request, multivaluedict).copy()
        secrets = self.request_secrets(request)
        passwords = self.infrastructure_passwords(request)
        for name, values in multivaluedict.lists():
            if secret_name(name) or any(self.holds_secret(value, secrets) for value in values):
                multivaluedict[name] = self.cleansed_substitute
            else:
                multivaluedict.setlist(
                    name, [self.mask(v, passwords) if is_text(v) else v for v in values]
                )
        return multivaluedict

    def get_post_parameters(self, request):
        if request is None:
            return {}
        return self.get_cleansed_multivaluedict(request, super().get_post_parameters(request))

    def get_query_parameters(self, request):
        return self.get_cleansed_multivaluedict(request, request.GET)

    def get_safe_request_meta(self, request):
        secrets = self.request_secrets(request)
        passwords = self.infrastructure_passwords(request)
        with self.knowing(passwords):
            return {
                name: self.cleanse(name, value, secrets, passwords)
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
    """Shows the request's query and URL, the exception's text and the source lines, through the filter."""

    def get_traceback_data(self):
        if not isinstance(self.filter, SecretsFilter):
            return super().get_traceback_data()
        # The infrastructure passwords are found once for the whole report: those of the
        # settings, of the environment and of every frame of every exception in the chain.
        passwords = set(self.filter.infrastructure_passwords(self.request))
        for tb in self._innermost_tracebacks():
            passwords |= self.filter.frame_passwords(tb.tb_frame)
        with self.filter.knowing(passwords):
            return self._filtered(super().get_traceback_data(), self.filter.infrastructure_passwords())

    def _filtered(self, data, passwords):
        if self.request is not None:
            data["request_GET_items"] = self.filter.get_query_parameters(self.request).items()
            data["request_insecure_uri"] = "{scheme}://{host}{path}".format(
                scheme=self.request.scheme,
                host=self.request._get_raw_host(),
                path=self.filter.safe_path(self.request),
            )
        # An exception's text is shown whole: the known secrets in it are replaced, and
        # so are URLs' userinfo and the known passwords.
        secrets = set(self.filter.request_secrets(self.request))
        for frame in data["frames"]:
            if frame.get("tb") is not None:
                secrets |= self.filter.frame_secrets(frame["tb"].tb_frame)
        for key in ("exception_value", "exception_notes"):
            if isinstance(data.get(key), str):
                data[key] = self.filter.mask(self.filter.redact(data[key], secrets), passwords)
        for frame in data["frames"]:
            if frame.get("exc_cause") is not None:
                cause = self.filter.redact(str(frame["exc_cause"]), secrets)
                frame["exc_cause"] = self.filter.mask(cause, passwords)
            # The source shown around each line: a URL or a password written in the code.
            for key in ("pre_context", "post_context"):
                if frame.get(key):
                    frame[key] = [self.filter.mask(line, passwords, parameters=False) for line in frame[key]]
            if isinstance(frame.get("context_line"), str):
                frame["context_line"] = self.filter.mask(frame["context_line"], passwords, parameters=False)
        return data

    def _innermost_tracebacks(self):
        """The innermost traceback entry of the exception and of each one chained to it."""
        seen = set()
        exc_value, tb = self.exc_value, self.tb
        while tb is not None:
            while tb.tb_next is not None:
                tb = tb.tb_next
            yield tb
            if exc_value is None or id(exc_value) in seen:
                return
            seen.add(id(exc_value))
            exc_value = exc_value.__cause__ or exc_value.__context__
            tb = getattr(exc_value, "__traceback__", None)
