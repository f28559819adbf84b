from django.db import models

# What a key may do. One scope today; a key holds a space-separated list, so
# a narrower one can be added without a migration.
TOKENS_READ = "tokens:read"
SCOPES = {TOKENS_READ: "Read accounts and hand out their access tokens"}


class ServiceKey(models.Model):
    """A key another service presents as ``Authorization: Bearer <key>``.

    Only a digest of the key is stored (api.keys says why a plain SHA-256
    suffices), beside its first characters, which identify it in the admin and
    in the log without being enough to use it.
    """

    name = models.CharField(max_length=100, unique=True, help_text="Who uses this key, e.g. workflow-engine.")
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    key_hash = models.CharField(max_length=64, editable=False)
    scopes = models.CharField(max_length=200, blank=True, default=TOKENS_READ)
    created_at = models.DateTimeField(auto_now_add=True)
    # Written at most once a minute per key (api.keys.note_use).
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "service key"

    def __str__(self):
        return self.name

    # What Django REST framework asks of the request's user: the key is the caller.
    is_authenticated = True

    @property
    def scope_list(self):
        return self.scopes.split()

    @property
    def active(self):
        return self.revoked_at is None
