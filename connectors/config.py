"""Reading and writing a connector's configuration.

Every write goes through :func:`config_update`, from the admin and the
commands alike, so that normalisation, validation and the all-or-nothing
save are the same everywhere.
"""

from django.core.exceptions import ValidationError
from django.db import transaction
from django.views.decorators.debug import sensitive_variables
from encrypted_model_fields import fields as upstream

from .exceptions import InvalidConfiguration, NotConfigured
from .models import ConnectorConfig, ConnectorValue
from .registry import registry

MASK = "••••"


def mask(value):
    """Show at most the last 4 characters, and none of a short value."""
    if not value:
        return ""
    if len(value) < 12:
        return MASK
    return MASK + value[-4:]


@sensitive_variables()
def config_normalise(*, service_id, values):
    """Clean every value; raise InvalidConfiguration naming each bad key."""
    connector = registry.get(service_id)
    cleaned, errors = {}, {}
    for key, raw in values.items():
        try:
            field = connector.field(key)
        except KeyError:
            known = ", ".join(f.key for f in connector.fields)
            errors[key] = f"unknown key; {service_id} has {known}."
            continue
        try:
            cleaned[key] = field.normalise(raw)
        except ValidationError as error:
            errors[key] = " ".join(error.messages)
    if errors:
        raise InvalidConfiguration(errors)
    return cleaned


@transaction.atomic
@sensitive_variables()
def config_update(*, service_id, values=None, clear=()):
    """Set ``values`` and remove the keys in ``clear``; return the keys changed.

    All values are checked before anything is written, so a single bad value
    leaves the stored configuration exactly as it was.
    """
    connector = registry.get(service_id)
    cleaned = config_normalise(service_id=service_id, values=values or {})
    unknown = [key for key in clear if key not in {f.key for f in connector.fields}]
    if unknown:
        raise InvalidConfiguration({key: "unknown key." for key in unknown})
    config, _ = ConnectorConfig.objects.select_for_update().get_or_create(service_id=service_id)
    current = {v.key: v for v in config.values.all()}
    changed = []
    for key, value in cleaned.items():
        stored = current.get(key)
        if stored is not None and stored.value == value:
            continue
        if stored is None:
            ConnectorValue.objects.create(config=config, key=key, value=value)
        else:
            stored.value = value
            stored.save(update_fields=["value", "updated_at"])
        changed.append(key)
    for key in clear:
        if key in current and key not in cleaned:
            current[key].delete()
            changed.append(key)
    if changed:
        config.save(update_fields=["updated_at"])
    return changed


# Each connector's values as this process last read them, decrypted, with
# the version they were read at (each key and the time it last changed) and
# the keys that decrypted them. Every use first reads the version (no value,
# nothing decrypted), so that a change made by any process or host is seen at
# once; the values stay in this process's memory, never in a shared store.
_read = {}


def _versions(service_id):
    """Each stored key with the time it last changed: what tells a process its copy is stale."""
    return frozenset(
        ConnectorValue.objects.filter(config__service_id=service_id).values_list("key", "updated_at")
    )


@sensitive_variables("rows", "held")
def _stored(service_id, version=None):
    """The stored values, decrypted, read again only when a key changed since this process read them."""
    version = _versions(service_id) if version is None else version
    held = _read.get(service_id)
    if held is None or held[0] != version or held[1] is not upstream.CRYPTER:
        crypter = upstream.CRYPTER
        rows = list(
            ConnectorValue.objects.filter(config__service_id=service_id).values_list("key", "updated_at", "value")
        )
        versions = frozenset((key, at) for key, at, _ in rows)
        held = _read[service_id] = (versions, crypter, {key: value for key, _, value in rows})
    return held[2]


def config_values(service_id):
    """The stored values, decrypted, with defaults for the keys left unset."""
    connector = registry.get(service_id)
    stored = _stored(service_id)
    return {f.key: stored.get(f.key, f.default) for f in connector.fields if f.key in stored or f.default}


def config_client_values(connector):
    """The stored values, or NotConfigured naming the ``flow_keys`` missing from them.

    No token call (the flow's exchange, a refresh) can work without them.
    """
    values = config_values(connector.service_id)
    missing = [key for key in connector.flow_keys if not values.get(key)]
    if missing:
        raise NotConfigured(
            f"The {connector.name} connector is not configured yet (missing {', '.join(missing)})."
        )
    return values


def config_keys_set(service_id):
    """Which keys hold a stored value, read without decrypting any."""
    return {key for key, _ in _versions(service_id)}


def config_summary(service_id):
    """What an operator may see: each key, whether set, and secrets masked."""
    connector = registry.get(service_id)
    values = config_values(service_id)
    return [
        {
            "key": f.key,
            "label": f.label,
            "secret": f.secret,
            "set": f.key in values,
            "value": (mask(values[f.key]) if f.secret else values[f.key]) if f.key in values else None,
        }
        for f in connector.fields
    ]
