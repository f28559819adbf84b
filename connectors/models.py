from django.conf import settings
from django.db import models

from .exceptions import UnknownConnector
from .fields import EncryptedTextField
from .registry import registry


class ConnectorConfig(models.Model):
    """The operator's configuration of one connector, one row per service id."""

    service_id = models.CharField(max_length=100, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # Set when the provider refused the app's own credentials (invalid_client):
    # no account is at fault then, and none is marked. Cleared by the next
    # accepted token call, a green Test credentials or a changed secret.
    credentials_refused_at = models.DateTimeField(null=True, blank=True)
    credentials_refused = models.CharField("the provider's words", max_length=300, blank=True)

    class Meta:
        ordering = ["service_id"]
        verbose_name = "connector configuration"

    def __str__(self):
        return self.service_id


class ConnectorValue(models.Model):
    """One configuration value, encrypted whether secret or not.

    A row per key lets the admin tell which keys are set without decrypting
    anything.
    """

    config = models.ForeignKey(ConnectorConfig, on_delete=models.CASCADE, related_name="values")
    key = models.CharField(max_length=64)
    value = EncryptedTextField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["key"]
        constraints = [
            models.UniqueConstraint(fields=["config", "key"], name="connector_value_unique_key"),
        ]
        verbose_name = "connector value"

    def __str__(self):
        return f"{self.config.service_id} {self.key}"


class ConnectedAccount(models.Model):
    """One end user's grant from one provider identity; tokens encrypted."""

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        NEEDS_RECONNECT = "needs_reconnect", "Needs reconnect"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="connected_accounts"
    )
    service_id = models.CharField(max_length=100)
    uid = models.CharField("provider user id", max_length=64)
    username = models.CharField(max_length=100, blank=True)
    display_name = models.CharField(max_length=100, blank=True)
    avatar_url = models.URLField(max_length=500, blank=True)
    email = models.EmailField(blank=True)
    access_token = EncryptedTextField()
    refresh_token = EncryptedTextField(blank=True)
    token_type = models.CharField(max_length=20, default="Bearer")
    scopes = models.CharField(max_length=500, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True, db_index=True)
    status = models.CharField(
        max_length=20, choices=Status.choices, default=Status.ACTIVE, db_index=True
    )
    status_reason = models.CharField(max_length=300, blank=True)
    status_changed_at = models.DateTimeField(null=True, blank=True)

    class MarkedBy(models.TextChoices):
        REFRESH = "refresh", "a refused refresh"
        CHECK = "check", "a refused grant check"
        EVENT = "event", "the provider's event"

    # What marked it needs-reconnect (empty while active): the brake on mass
    # marking counts the refusals, never the person's own removal of the app.
    marked_by = models.CharField(max_length=10, choices=MarkedBy.choices, blank=True)
    # The last connect or reconnect: an event about the grant older than this
    # speaks of a grant that is gone, not of this one.
    connected_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    refreshed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        # The admin's list reads the newest rows first: without this index it
        # sorts every account to show a page of them.
        indexes = [models.Index(fields=["-created_at", "-id"], name="connected_account_newest")]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "service_id", "uid"], name="connected_account_unique_identity"
            ),
        ]
        verbose_name = "connected account"

    def __str__(self):
        return f"{self.display_name or self.username or self.uid} ({self.service_id})"

    @property
    def scope_list(self):
        return self.scopes.split()

    @property
    def connector(self):
        return registry.get(self.service_id)


class AccountServer(models.Model):
    """A place at the provider (a server, a workspace) the operator's app was added to through an account."""

    account = models.ForeignKey(ConnectedAccount, on_delete=models.CASCADE, related_name="servers")
    server_id = models.CharField(max_length=64)
    name = models.CharField(max_length=200, blank=True)
    class Source(models.TextChoices):
        GRANTED = "granted", "granted (as the provider says)"
        REQUESTED = "requested", "requested (the provider did not say)"

    permissions = models.CharField(
        max_length=500, blank=True, help_text="What the app may do there, as the provider encodes it."
    )
    # Where ``permissions`` comes from: the provider's word, or, when it said
    # nothing, what was asked for; never the redirect URL, which the person can edit.
    permissions_source = models.CharField(
        max_length=10, choices=Source.choices, default=Source.REQUESTED
    )
    # What the app acts with there, when the provider issues a token per
    # place; empty when the connector's own credentials serve everywhere.
    token = EncryptedTextField(blank=True, default="")
    added_at = models.DateTimeField()
    # Set when the provider said the app can no longer act there (removed, or
    # its permissions taken away); cleared when it is added again.
    access_lost_at = models.DateTimeField(null=True, blank=True)
    access_lost_reason = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-added_at", "-pk"]
        constraints = [
            models.UniqueConstraint(fields=["account", "server_id"], name="account_server_unique"),
        ]
        verbose_name = "server"

    def __str__(self):
        return self.name or self.server_id

    @property
    def permission_names(self):
        """What the app may do here, as the account's connector names it (empty if it names nothing)."""
        try:
            return self.account.connector.describe_permissions(self.permissions)
        except UnknownConnector:
            return []


def rows_by_pk(queryset, fields, *, batch_size):
    """Yield ``fields`` (which name "pk") of every row, a keyset page of ``batch_size`` at a time.

    Each page is its own query, read to the end before its rows are used:
    paging on the primary key (not OFFSET) keeps every page cheap, is not
    thrown off by rows that stop matching meanwhile, and leaves no cursor
    open while the caller works on a row.
    """
    ordered = queryset.order_by("pk")
    at = list(fields).index("pk")
    last = None
    while True:
        page = ordered if last is None else ordered.filter(pk__gt=last)
        rows = list(page.values_list(*fields)[:batch_size])
        if not rows:
            return
        yield from rows
        last = rows[-1][at]


class PendingRevocation(models.Model):
    """A grant the provider gave us that could neither be stored nor revoked: kept to revoke again.

    Written and read only by ``connectors.revocations``; the tokens are
    encrypted like an account's, and no page ever shows them.
    """

    service_id = models.CharField(max_length=100)
    uid = models.CharField("provider user id", max_length=64, blank=True)
    what = models.CharField(max_length=100)
    # Connector.revoke's scope: "token" (an unstored or replaced grant) or "grant" (a disconnect).
    scope = models.CharField(max_length=10, default="token")
    access_token = EncryptedTextField(blank=True)
    refresh_token = EncryptedTextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    attempts = models.PositiveIntegerField(default=0)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["created_at", "pk"]
        verbose_name = "pending revocation"

    def __str__(self):
        return f"{self.what} of {self.service_id} user {self.uid or 'unknown'}"


class EventDelivery(models.Model):
    """A provider's event already taken: the same delivery again changes nothing.

    Kept for EVENT_MEMORY (connectors.events), longer than a provider goes
    on retrying, and longer than a signature stays fresh.
    """

    service_id = models.CharField(max_length=100)
    # The provider's event id where it gives one, else the SHA-256 of the signature.
    key = models.CharField(max_length=128)
    received_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["service_id", "key"], name="event_delivery_unique"),
        ]
        verbose_name = "event delivery"

    def __str__(self):
        return f"{self.service_id} {self.key}"


class HeldMark(models.Model):
    """A needs-reconnect the brake held back: too many accounts of one connector refused at once.

    The account keeps its status meanwhile; an operator confirms (the mark
    is applied) or dismisses (it is dropped) once they know whether the
    provider, or a setting, was at fault.
    """

    account = models.OneToOneField(ConnectedAccount, on_delete=models.CASCADE, related_name="held_mark")
    service_id = models.CharField(max_length=100, db_index=True)
    reason = models.CharField(max_length=300)
    # The provider's words, as the refusal gave them.
    error = models.CharField(max_length=300, blank=True)
    marked_by = models.CharField(max_length=10, choices=ConnectedAccount.MarkedBy.choices)
    held_at = models.DateTimeField()

    class Meta:
        ordering = ["held_at", "pk"]
        verbose_name = "held mark"

    def __str__(self):
        return f"{self.account} held: {self.reason}"
