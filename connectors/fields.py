"""Encrypted model fields that refuse to hand out ciphertext as a value.

django-encrypted-model-fields returns the stored ciphertext unchanged when it
does not decrypt, so a wrong FIELD_ENCRYPTION_KEY would quietly turn every
secret into garbage that the next save encrypts again: the secret is lost.
Here a value that does not decrypt raises instead, naming the setting and
never the value.
"""

from cryptography.fernet import InvalidToken
from django.core.signals import setting_changed
from django.db import models
from django.dispatch import receiver
from encrypted_model_fields import fields as upstream

from .exceptions import EncryptionKeyError


class EncryptedTextField(upstream.EncryptedTextField):
    # Marks ciphertext in serialized data (dumpdata), so loaddata decrypts it
    # instead of storing it as the value.
    SERIALIZED_PREFIX = "fernet:"

    def from_db_value(self, value, expression, connection):
        if value is None:
            return None
        return self._decrypt(value)

    def value_to_string(self, obj):
        """dumpdata writes ciphertext, never the value it protects."""
        value = self.value_from_object(obj)
        if value is None:
            return None
        return self.SERIALIZED_PREFIX + upstream.encrypt_str(value).decode()

    def _decrypt(self, value):
        try:
            return upstream.decrypt_str(value)
        except InvalidToken:
            raise EncryptionKeyError(
                f"A stored {self.model._meta.verbose_name} ({self.name}) does "
                "not decrypt under any key in FIELD_ENCRYPTION_KEY. Put the key "
                "it was written with back into FIELD_ENCRYPTION_KEY (a "
                "comma-separated list: the first key encrypts, all decrypt)."
            ) from None

    def to_python(self, value):
        # Values from forms and code are plaintext; ciphertext comes only from
        # the database (from_db_value) and from serialized data (marked).
        if isinstance(value, str) and value.startswith(self.SERIALIZED_PREFIX):
            return self._decrypt(value[len(self.SERIALIZED_PREFIX):])
        return models.TextField.to_python(self, value)


@receiver(setting_changed)
def _reload_keys(setting, **kwargs):
    """The library builds its crypter once at import; follow key changes in tests."""
    if setting == "FIELD_ENCRYPTION_KEY":
        upstream.CRYPTER = upstream.get_crypter()


def encrypted_fields(model):
    return [f for f in model._meta.concrete_fields if isinstance(f, upstream.EncryptedMixin)]
