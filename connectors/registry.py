"""Connectors declare what differs between providers; the framework does the rest.

A connector is registered once, from its own app's ``ready()``, under its
service id (``appmixer:discord``). Adding a provider means adding a package
with a :class:`Connector` subclass and listing it in ``INSTALLED_APPS``; no
module of the framework changes.
"""

from dataclasses import dataclass, field
from typing import Callable

from django.conf import settings
from django.core.exceptions import ValidationError
from django.urls import reverse

from .exceptions import UnknownConnector


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

    def normalise(self, raw):
        value = (raw or "").strip()
        if not value:
            raise ValidationError("This value is empty.")
        if self.clean is not None:
            value = self.clean(value)
        return value


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check of a connector's credentials against the provider."""

    name: str
    ok: bool
    detail: str
    hint: str = ""


class Connector:
    """Base class: subclasses set the attributes and override the hooks."""

    service_id: str = ""
    # The URL slug: /auth/<provider>/connect and /auth/<provider>/callback.
    provider: str = ""
    name: str = ""
    fields: tuple[ConfigField, ...] = ()
    # A short list shown to the operator beside the redirect URL.
    setup_checklist: tuple[str, ...] = ()

    def field(self, key):
        for candidate in self.fields:
            if candidate.key == key:
                return candidate
        raise KeyError(key)

    @property
    def secret_keys(self):
        return {f.key for f in self.fields if f.secret}

    def redirect_url(self):
        """The URL to register at the provider, character for character."""
        return settings.PUBLIC_BASE_URL + reverse(
            "oauth-callback", kwargs={"provider": self.provider}
        )

    def check_credentials(self, values):
        """Prove the stored values against the provider; a list of CheckResult."""
        raise NotImplementedError

    def describe_permissions(self, value):
        """The names of what a stored permission value allows, for people to read.

        ``value`` is what the connector stored for a server (a string). The
        default names nothing: pages then show the raw value. A connector whose
        provider names its permissions returns those names, in its own order.
        """
        return []


@dataclass
class Registry:
    connectors: dict[str, Connector] = field(default_factory=dict)

    def register(self, connector):
        self.connectors[connector.service_id] = connector
        return connector

    def get(self, service_id):
        try:
            return self.connectors[service_id]
        except KeyError:
            raise UnknownConnector(service_id) from None

    def by_provider(self, provider):
        for connector in self.connectors.values():
            if connector.provider == provider:
                return connector
        raise UnknownConnector(provider)

    def __iter__(self):
        return iter(self.connectors.values())


registry = Registry()
