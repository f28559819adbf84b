"""Whole-database operations on encrypted values: read them all, rewrite them all."""

from django.apps import apps
from django.db import connection, transaction

from .fields import encrypted_fields
from .models import rows_by_pk


def encrypted_models():
    return [model for model in apps.get_models() if encrypted_fields(model)]


def stored_values_unreadable(sample=None):
    """The models whose stored values do not decrypt; reads at most ``sample`` rows each.

    Tables that do not exist yet (before ``migrate``) are skipped, since a
    system check runs before migrations do.
    """
    from .exceptions import EncryptionKeyError

    tables = set(connection.introspection.table_names())
    unreadable = []
    for model in encrypted_models():
        if model._meta.db_table not in tables:
            continue
        names = [f.name for f in encrypted_fields(model)]
        rows = model._default_manager.order_by("-pk").values_list(*names)
        try:
            list(rows[:sample] if sample else rows.iterator())
        except EncryptionKeyError:
            unreadable.append(model)
    return unreadable


# Rows read and rewritten per query during a rotation.
ROTATE_BATCH = 500


@transaction.atomic
def encryption_key_rotate():
    """Rewrite every encrypted value under the first key; return how many were rewritten.

    Each row is read (any configured key decrypts it) and written back with
    ``update()``, which encrypts with the first key. A value that no key
    reads stops the whole rotation before anything is committed.
    """
    rewritten = 0
    for model in encrypted_models():
        names = [f.name for f in encrypted_fields(model)]
        manager = model._default_manager
        # Whole batches: a server-side cursor (``iterator()``) would stay open
        # when a value fails to decrypt, and closing it after the rollback
        # breaks an enclosing transaction on PostgreSQL.
        rows = rows_by_pk(manager.select_for_update(), ("pk", *names), batch_size=ROTATE_BATCH)
        for pk, *values in rows:
            manager.filter(pk=pk).update(**dict(zip(names, values)))
            rewritten += sum(value is not None for value in values)
    return rewritten
