"""Connectors declare what differs between providers; the framework does the rest.

A connector is registered once, from its own app's ``ready()``, under its
service id (``appmixer:<provider>``). Adding a provider means adding a package
with a :class:`connectors.base.Connector` subclass, its block in
``settings.CONNECTORS`` and its line in ``INSTALLED_APPS``; no module of the
framework changes.
"""

from dataclasses import dataclass, field

from .exceptions import UnknownConnector


@dataclass
class Registry:
    connectors: dict = field(default_factory=dict)

    def register(self, connector):
        self.connectors[connector.service_id] = connector
        return connector

    def unregister(self, service_id):
        self.connectors.pop(service_id, None)

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


def service_id_help():
    """The commands' help for a service id argument: the ids registered here."""
    return "The connector's service id: " + ", ".join(sorted(registry.connectors)) + "."
