"""The admin form for a connector's configuration, built from its registry entry.

The form only collects and checks input: what to set and what to clear. The
admin hands that to ``config_update``, the one place that writes values, so
the admin and the commands store exactly the same things.
"""

from django import forms
from django.core.exceptions import ValidationError
from django.utils.html import escape
from django.views.decorators.debug import sensitive_variables

from .config import MASK, config_normalise, mask
from .exceptions import InvalidConfiguration
from .models import ConnectorConfig
from .registry import registry

CLEAR_PREFIX = "clear_"


def clear_name(key):
    return CLEAR_PREFIX + key


def _lower_first(label):
    """'Client secret' reads 'Clear client secret'; 'API key' keeps its capitals."""
    if label[:2].isupper():
        return label
    return label[:1].lower() + label[1:]


def _secret_help(field, stored):
    """Say whether a secret is set, by its last 4 characters at most, never more."""
    if stored:
        # The admin renders help text as HTML; the visible characters are data.
        masked = escape(mask(stored))
        state = f"Set — ends in {masked}." if masked != MASK else f"Set — {masked}."
        action = "Leave empty to keep it; type a new value to replace it."
    else:
        state = "Not set."
        action = ""
    return " ".join(part for part in (state, field.help_text, action) if part)


class FlagsField(forms.MultipleChoiceField):
    """An integer bit set shown as check boxes, stored as its decimal string."""

    widget = forms.CheckboxSelectMultiple

    def __init__(self, *, flags, **kwargs):
        super().__init__(choices=[(str(bit), label) for label, bit in flags], **kwargs)

    def prepare_value(self, value):
        if isinstance(value, str) and value.isdigit():
            return [str(bit) for bit, _ in self.choices if int(value) & int(bit)]
        return value

    def has_changed(self, initial, data):
        return super().has_changed(self.prepare_value(initial), data)

    def clean(self, value):
        return str(sum(int(bit) for bit in super().clean(value)))


def _empty_help(field):
    if field.default:
        return f"Empty it to use the default ({escape(field.default)})."
    return "Empty it to remove it."


def _value_field(field, stored):
    if field.secret:
        return forms.CharField(
            label=field.label,
            required=False,
            widget=forms.PasswordInput(
                render_value=False,
                # Keeps browsers from filling in the admin's own saved password.
                attrs={"autocomplete": "new-password", "spellcheck": "false"},
            ),
            help_text=_secret_help(field, stored),
        )
    if field.flags:
        return FlagsField(
            flags=field.flags, label=field.label, required=False, help_text=field.help_text,
            initial=stored or field.default,
        )
    return forms.CharField(
        label=field.label,
        required=False,
        initial=stored or field.default,
        help_text=" ".join(part for part in (field.help_text, _empty_help(field)) if part),
        widget=forms.TextInput(attrs={"size": 40, "spellcheck": "false"}),
    )


class ConnectorConfigForm(forms.ModelForm):
    """Set the keys typed in, keep the secrets left empty, clear the ones ticked.

    Subclasses made by :func:`connector_config_form` carry the connector and
    its stored values; after ``is_valid()``, ``config_changes`` holds what to
    pass to ``config_update``.
    """

    connector = None
    stored = {}

    class Meta:
        model = ConnectorConfig
        fields = ["service_id"]

    @sensitive_variables()
    def clean(self):
        """Sort the input into values to set and keys to clear, checked as
        ``config_update`` will check them. Kept out of error reports: the
        locals hold the typed secrets."""
        cleaned_data = super().clean()
        values, clear = {}, []
        for field in self.connector.fields:
            key = field.key
            raw = cleaned_data.get(key)
            if field.secret:
                wants_clear = cleaned_data.get(clear_name(key), False)
                if raw and wants_clear:
                    self.add_error(
                        clear_name(key), "Either type a new value or clear it, not both."
                    )
                elif raw:
                    values[key] = raw
                elif wants_clear:
                    clear.append(key)
            elif key in self.changed_data:
                if raw:
                    values[key] = raw
                elif key in self.stored:
                    clear.append(key)
        try:
            config_normalise(service_id=self.connector.service_id, values=values)
        except InvalidConfiguration as error:
            for key, message in error.errors.items():
                # The label the operator sees beside the box, not the stored key.
                label = next((f.label for f in self.connector.fields if f.key == key), key)
                self.add_error(key, ValidationError(f"{label}: {message}", code="invalid"))
        self.config_changes = {"values": values, "clear": clear}
        return cleaned_data


def connector_config_form(connector, *, stored=None, service_choices=None):
    """A form class with one field per configuration key of ``connector``.

    The fields are declared on a class rather than added per instance so that
    the admin's fieldsets can name them. ``service_choices`` is given on the
    add page only: there the service id is picked, later it is fixed.
    """
    stored = dict(stored or {})
    attrs = {"connector": connector, "stored": stored}
    if service_choices is not None:
        attrs["service_id"] = forms.ChoiceField(
            label="Service ID",
            choices=service_choices,
            initial=connector.service_id,
            help_text="The connector to configure. It cannot be changed once saved.",
        )
    for field in connector.fields:
        attrs[field.key] = _value_field(field, stored.get(field.key))
        if field.secret:
            # Declared for every secret; the admin shows it for the ones set.
            attrs[clear_name(field.key)] = forms.BooleanField(
                label=f"Clear {_lower_first(field.label)}",
                required=False,
                help_text="Removes the stored value.",
            )
    return type(ConnectorConfigForm)(
        f"{type(connector).__name__}ConfigForm", (ConnectorConfigForm,), attrs
    )


def service_choices(configured):
    """Registered connectors that have no configuration yet, for the add page."""
    return [
        (connector.service_id, f"{connector.service_id} ({connector.name})")
        for connector in sorted(registry, key=lambda c: c.service_id)
        if connector.service_id not in configured
    ]
