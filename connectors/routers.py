"""The database cache on a connection of its own (see CACHES in backoffice/settings.py)."""

from django.conf import settings

CACHE_ALIAS = "cache"
# The app label Django's DatabaseCache gives the model it routes.
CACHE_APP_LABEL = "django_cache"


class CacheRouter:
    """Reads and writes of the database cache go through the ``cache`` alias.

    It names the same database as ``default``, so its table is made by
    ``migrate`` on ``default``; nothing is ever migrated through the alias.
    """

    def db_for_read(self, model, **hints):
        if model._meta.app_label == CACHE_APP_LABEL and CACHE_ALIAS in settings.DATABASES:
            return CACHE_ALIAS
        return None

    db_for_write = db_for_read

    def allow_migrate(self, db, app_label, **hints):
        if db == CACHE_ALIAS:
            return False
        return None
