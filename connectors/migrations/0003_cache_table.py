"""The database cache's table, so that ``migrate`` is the only step a deployment needs.

The shared rate-limit pace lives in Django's cache, whose default is the
database cache (CACHE_URL). Its table is not a model, so it is made here
with Django's own ``createcachetable``, which skips tables that exist and
caches that are not database caches.
"""

from django.core.management import call_command
from django.db import migrations


def create_cache_table(apps, schema_editor):
    call_command("createcachetable", database=schema_editor.connection.alias, verbosity=0)


class Migration(migrations.Migration):

    dependencies = [
        ("connectors", "0002_connected_account_newest_index"),
    ]

    operations = [
        migrations.RunPython(create_cache_table, migrations.RunPython.noop),
    ]
