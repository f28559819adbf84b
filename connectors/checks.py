"""System checks: ``manage.py check`` (and every start-up) reports what would break."""

from django.core import checks
from django.db import DatabaseError

from .crypto import stored_values_unreadable

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
            hint="Put the key they were written with back into FIELD_ENCRYPTION_KEY "
            "(comma-separated: the first key encrypts, all decrypt), then run "
            "`manage.py rotate_encryption_key` before dropping it.",
            obj=model,
            id="connectors.E001",
        )
        for model in unreadable
    ]
