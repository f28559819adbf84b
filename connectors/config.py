"""Reading and writing a connector's configuration.

Every write goes through :func:`config_update`, from the admin and the
commands alike, so that normalisation, validation and the all-or-nothing
save are the same everywhere.
"""

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
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
        # A changed secret may be the fix: the provider is asked again before the flag says anything.
        secret_changed = any(connector.field(key).secret for key in changed if key in cleaned)
        if secret_changed:
            config.credentials_refused_at, config.credentials_refused = None, ""
        config.save(update_fields=["updated_at", "credentials_refused_at", "credentials_refused"])
    return changed


# What this process last read of each connector's configuration: the
# version it was read at (the configuration's last change), the keys set and,
# once asked for, the values decrypted (with the keys that decrypted them).
# Every use first reads the versions (one small read for every connector,
# nothing decrypted), so that a change made by any process or host is seen at
# once; the values stay in this process's memory, never in a shared store.
_read = {}


def config_versions():
    """Each configured connector's last change, by service id: what tells a process its copy is stale.

    A version is the configuration's change time and when the provider last
    refused its credentials (None while it has not), so that the same read
    tells a token call whether there is a flag to clear.
    """
    return {
        service_id: (updated_at, refused_at)
        for service_id, updated_at, refused_at in ConnectorConfig.objects.values_list(
            "service_id", "updated_at", "credentials_refused_at"
        )
    }


def _entry(service_id, versions):
    version = (config_versions() if versions is None else versions).get(service_id)
    if version is None:
        _read.pop(service_id, None)
        return None
    entry = _read.get(service_id)
    if entry is None or entry["version"] != version:
        keys = ConnectorValue.objects.filter(config__service_id=service_id).values_list("key", flat=True)
        entry = _read[service_id] = {"version": version, "keys": frozenset(keys), "values": None}
    return entry


@sensitive_variables("values", "entry")
def _stored(service_id):
    """The stored values, decrypted, read again only when the configuration changed since this process read them."""
    entry = _entry(service_id, None)
    if entry is None:
        return {}
    if entry["values"] is None or entry["crypter"] is not upstream.CRYPTER:
        crypter = upstream.CRYPTER
        values = dict(
            ConnectorValue.objects.filter(config__service_id=service_id).values_list("key", "value")
        )
        entry.update(values=values, crypter=crypter)
    return entry["values"]


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


def config_keys_set(service_id, versions=None):
    """Which keys hold a stored value, read without decrypting any.

    ``versions`` (from config_versions) spares a read when several connectors are looked at.
    """
    entry = _entry(service_id, versions)
    return set(entry["keys"]) if entry else set()


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


def credentials_refused_note(connector, error):
    """The provider refused the app's own credentials: flag the connector, touch no account.

    Returns whether the flag is new (the caller logs it at ERROR once). The
    flag is written with ``update()``, so the configuration's change time,
    and with it every process's decrypted values, stay as they are.
    """
    flagged = ConnectorConfig.objects.filter(service_id=connector.service_id, credentials_refused_at__isnull=True).update(
        credentials_refused_at=timezone.now(), credentials_refused=str(error)[:300]
    )
    return bool(flagged)


def credentials_accepted(connector):
    """A token call the provider accepted: clear the flag, if this process last read one (no query otherwise)."""
    entry = _read.get(connector.service_id)
    if entry is None or entry["version"][1] is not None:
        _refusal_clear(connector.service_id)


def _refusal_clear(service_id):
    ConnectorConfig.objects.filter(service_id=service_id, credentials_refused_at__isnull=False).update(
        credentials_refused_at=None, credentials_refused=""
    )


def credentials_refusal(service_id):
    """``(when, the provider's words)`` of the standing refusal, or None."""
    return (
        ConnectorConfig.objects.filter(service_id=service_id, credentials_refused_at__isnull=False)
        .values_list("credentials_refused_at", "credentials_refused")
        .first()
    )


def config_check(connector):
    """Test credentials: the connector's checks against the stored values; all green clears a refusal flag."""
    results = connector.check_credentials(config_values(connector.service_id))
    if results and all(result.ok for result in results):
        _refusal_clear(connector.service_id)
    return results
