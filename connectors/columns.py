"""A provider's values made safe for our columns, wherever they are stored."""

import re

from django.core.exceptions import ValidationError
from django.db.models import EmailField, URLField

from .exceptions import ProviderError

# Characters that may not reach a column: controls (NUL among them) and the
# lone surrogates a JSON answer can carry but no database encoding takes.
UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


def refused(what):
    return ProviderError(f"The provider sent an answer that cannot be stored ({what}).")


def column_text(model, name, value, *, required=False):
    """A provider's value made safe for ``model.name``: text, no control characters, cut to fit.

    None is empty; any other type than text is refused, as is an empty
    ``required`` value. Nothing a provider sends then fails an insert.
    """
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise refused(f"{name} is not text")
    value = UNSAFE.sub("", value).strip()
    field = model._meta.get_field(name)
    if field.max_length:
        value = value[: field.max_length]
    if required and not value:
        raise refused(f"{name} is empty")
    if value and isinstance(field, (EmailField, URLField)):
        try:
            field.run_validators(value)
        except ValidationError:
            value = ""
    return value
