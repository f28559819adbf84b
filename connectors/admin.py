import logging
from datetime import UTC

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.db.models import Prefetch
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.decorators import method_decorator
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.text import Truncator
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST

from .config import config_check, config_keys_set, config_summary, config_update, config_values
from .accounts import account_disconnect
from .brake import marks_confirm, marks_dismiss, marks_held
from .breaker import pause_notices
from .exceptions import ConnectorError, EncryptionKeyError, UnknownConnector
from .forms import clear_name, connector_config_form, service_choices
from .models import AccountServer, ConnectedAccount, ConnectorConfig, ConnectorValue, PendingRevocation
from .registry import registry
from .revocations import GIVEN_UP, REVOKED, gives_up_at, revocation_dropped, revocation_retry_one
from .tokens import account_check, account_refresh_now

logger = logging.getLogger(__name__)

TEMPLATES = "admin/connectors/connectorconfig/"


def utc_minutes(moment):
    """A stored time as the admin shows it: 2026-11-29 13:18 UTC; no time is "never"."""
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC" if moment else "never"


@admin.register(ConnectorConfig)
class ConnectorConfigAdmin(admin.ModelAdmin):
    """Edit a connector's values through ``config_update``; never show a secret.

    The form is built per connector from the registry. Saving hands the
    form's changes to ``config_update``, the same function the commands use;
    the model's own ``save()`` is never called from here.
    """

    # Fits 1280 px beside the admin's menu: the connector's name sits under its id.
    list_display = ("service", "keys_set", "last_changed")
    list_display_links = ("service",)
    # No search: the values are encrypted, and a search on them would have to
    # decrypt every row and compare secrets with what was typed.
    search_fields = ()

    class Media:
        css = {"all": ["connectors/admin.css"]}

    # The list

    def get_queryset(self, request):
        """Only the keys of the values: the list tells what is set without decrypting."""
        return (
            super()
            .get_queryset(request)
            .prefetch_related(
                Prefetch("values", queryset=ConnectorValue.objects.only("key", "config"))
            )
        )

    @admin.display(description="Service ID", ordering="service_id")
    def service(self, obj):
        try:
            name = registry.get(obj.service_id).name
        except UnknownConnector:
            name = "Not registered"
        refused = format_html(
            '<br><strong class="refused" title="{}">✗ credentials refused {}</strong>',
            obj.credentials_refused, utc_minutes(obj.credentials_refused_at),
        ) if obj.credentials_refused_at else ""
        return format_html('{}<br><span class="quiet">{}</span>{}', obj.service_id, name, refused)

    @admin.display(description="Keys set")
    def keys_set(self, obj):
        stored = {value.key for value in obj.values.all()}
        try:
            fields = registry.get(obj.service_id).fields
            defaults = {field.key for field in fields if field.default}
            keys = [field.key for field in fields if field.required or field.key in stored]
        except UnknownConnector:
            defaults, keys = set(), sorted(stored)

        def state(key):
            if key in stored:
                return "set", "✓", key, ""
            if key in defaults:
                # A key with a default is usable as it is: the default applies.
                return "the default applies", "✓", key, " (default)"
            return "not set", "✗", key, ""

        # Each mark stays beside its key; the keys may wrap between them (admin.css).
        return format_html_join(
            "\u2003", '<span title="{}">{} {}{}</span>', (state(key) for key in keys)
        )

    @admin.display(description="Last changed", ordering="updated_at")
    def last_changed(self, obj):
        return utc_minutes(obj.updated_at)

    # The add and change pages

    def has_add_permission(self, request):
        """One configuration per connector: nothing to add once all are configured."""
        return super().has_add_permission(request) and bool(self._add_choices())

    def _add_choices(self):
        return service_choices(set(ConnectorConfig.objects.values_list("service_id", flat=True)))

    def _connector(self, request, obj):
        """The saved connector on change; on add, the one picked (or the first free)."""
        if obj is not None:
            return registry.get(obj.service_id)
        free = [service_id for service_id, _ in self._add_choices()]
        wanted = request.POST.get("service_id") or request.GET.get("service_id")
        if wanted in free:
            return registry.get(wanted)
        if free:
            return registry.get(free[0])
        raise PermissionDenied

    def get_readonly_fields(self, request, obj=None):
        return ("service_id", "last_changed") if obj is not None else ()

    def get_fieldsets(self, request, obj=None):
        connector = self._connector(request, obj)
        first = ["service_id", "last_changed"] if obj is not None else ["service_id"]
        if obj is not None and not self.has_change_permission(request, obj):
            return [(None, {"fields": first})]
        stored = config_keys_set(obj.service_id) if obj is not None else set()
        rows = [
            (field.key, clear_name(field.key)) if field.secret and field.key in stored else field.key
            for field in connector.fields
        ]
        description = (
            f"The values of your {connector.name} application. Secrets are stored "
            "encrypted and never shown again, only their last 4 characters: leave a "
            "secret empty to keep the stored one. Every value is checked before "
            "anything is saved."
        )
        return [(None, {"fields": first}), ("Credentials", {"fields": rows, "description": description})]

    def get_form(self, request, obj=None, change=False, **kwargs):
        """A form for this connector's keys; on change it reads (decrypts) the stored values."""
        connector = self._connector(request, obj)
        if obj is None:
            form = connector_config_form(connector, service_choices=self._add_choices())
        else:
            form = connector_config_form(connector, stored=config_values(obj.service_id))
        return super().get_form(request, obj, change=change, form=form, **kwargs)

    @method_decorator(sensitive_post_parameters())
    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        """Show an explanation instead of a form when the stored values cannot be read.

        A form built on values that did not decrypt could save ciphertext or
        blanks over the operator's secrets; the error page has no form at all.
        The error leaves the admin's transaction, so nothing is written.
        """
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except (EncryptionKeyError, UnknownConnector) as error:
            return self._unusable_response(request, object_id, error)

    def delete_view(self, request, object_id, extra_context=None):
        """Django lists what a delete removes by loading every value, which decrypts it."""
        try:
            return super().delete_view(request, object_id, extra_context)
        except EncryptionKeyError as error:
            return self._unusable_response(request, object_id, error)

    def changelist_view(self, request, extra_context=None):
        """The list reads no value, but the "delete selected" action lists them first."""
        try:
            return super().changelist_view(request, extra_context)
        except EncryptionKeyError as error:
            return self._unusable_response(request, None, error)

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        connector = context["adminform"].form.connector
        if request.method == "GET":
            for notice in pause_notices():
                self.message_user(request, notice, messages.WARNING)
            if obj is not None and obj.credentials_refused_at:
                self.message_user(
                    request,
                    f"{connector.name} refused these client credentials at {utc_minutes(obj.credentials_refused_at)}: "
                    f"{obj.credentials_refused.rstrip('.')}. No account was marked and no one was mailed; refreshes of "
                    "this connector fail until they are corrected. Saving a new secret or a green Test "
                    "credentials clears this.",
                    messages.ERROR,
                )
        can_change = obj is None or self.has_change_permission(request, obj)
        context.update(
            {
                "connector": connector,
                "redirect_url": connector.redirect_url(),
                # A second configuration of the same connector cannot exist.
                "show_save_and_add_another": False,
                "summary": None if can_change else config_summary(obj.service_id),
                "test_credentials_url": (
                    reverse(self._url_name("test_credentials"), args=[obj.pk])
                    if obj is not None and can_change and connector.can_check_credentials
                    else None
                ),
            }
        )
        return super().render_change_form(request, context, add, change, form_url, obj)

    # Saving and history

    def save_model(self, request, obj, form, change):
        """Write through ``config_update``, inside the transaction the admin opened."""
        form.changed_keys = config_update(service_id=obj.service_id, **form.config_changes)
        obj.pk = ConnectorConfig.objects.get(service_id=obj.service_id).pk
        obj.refresh_from_db()

    def save_related(self, request, form, formsets, change):
        """Nothing related to save: ``save_model`` wrote every value."""

    def construct_change_message(self, request, form, formsets, add=False):
        """Name the keys ``config_update`` changed, never their values.

        Django's own message lists the form fields that differ from their
        initial value, which says a secret changed whenever one was typed,
        even when it was the same value.
        """
        message = [{"added": {}}] if add else []
        changed = getattr(form, "changed_keys", [])
        if changed:
            message.append({"changed": {"fields": changed}})
        return message

    # Test credentials

    def _url_name(self, view):
        return f"{self.admin_site.name}:{self.opts.app_label}_{self.opts.model_name}_{view}"

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        return [
            path(
                "<path:object_id>/test-credentials/",
                self.admin_site.admin_view(self.test_credentials_view),
                name="%s_%s_test_credentials" % info,
            ),
            *super().get_urls(),
        ]

    @method_decorator(require_POST)
    def test_credentials_view(self, request, object_id):
        """Ask the provider about the saved values; one result per check."""
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_change_permission(request, obj):
            raise PermissionDenied
        try:
            connector = registry.get(obj.service_id)
            values = config_values(obj.service_id)
        except (EncryptionKeyError, UnknownConnector) as error:
            return self._unusable_response(request, object_id, error)
        if not connector.can_check_credentials:
            self.message_user(
                request, f"The {connector.name} connector has no check of its credentials.", messages.INFO
            )
            return redirect(self._url_name("change"), obj.pk)
        results = config_check(connector)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": obj,
            "connector": connector,
            "results": results,
            "failed": sum(not result.ok for result in results),
            "title": "Test credentials",
            "subtitle": str(obj),
            "change_url": reverse(self._url_name("change"), args=[obj.pk]),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, TEMPLATES + "test_credentials.html", context)

    # Errors

    def _unusable_response(self, request, object_id, error):
        """Explain, without any form, why this configuration cannot be shown.

        409: the request is fine, what is stored conflicts with the running
        settings (a key missing from FIELD_ENCRYPTION_KEY, or a connector no
        longer installed). The page names the setting, never a value.
        """
        obj = self.get_object(request, unquote(object_id)) if object_id else None
        service_id = obj.service_id if obj is not None else ""
        if isinstance(error, EncryptionKeyError):
            logger.error(
                "Connector configuration %s is unreadable: %s", service_id or "(selection)", error
            )
            context = {
                "title": "Stored values cannot be read",
                "problem": format_html(
                    "The stored values{} do not decrypt under any key in "
                    "<code>FIELD_ENCRYPTION_KEY</code>.",
                    format_html(" of <strong>{}</strong>", service_id) if service_id else "",
                ),
                "hint": mark_safe(
                    "Put the key they were written with back into "
                    "<code>FIELD_ENCRYPTION_KEY</code> (a comma-separated list: the first "
                    "key encrypts, all of them decrypt) and restart the application. To "
                    "retire the old key afterwards, run <code>manage.py "
                    "rotate_encryption_key</code> and only then remove it. "
                    "<code>manage.py check</code> lists every table affected."
                ),
            }
        else:
            context = {
                "title": "Connector not installed",
                "problem": format_html(
                    "No connector is registered under <strong>{}</strong>.", service_id
                ),
                "hint": "Add the app that provides it to INSTALLED_APPS, or delete this configuration.",
            }
        context.update(
            {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "original": obj,
                "subtitle": service_id,
            }
        )
        request.current_app = self.admin_site.name
        return TemplateResponse(request, TEMPLATES + "error.html", context, status=409)


class AccountServerInline(admin.TabularInline):
    model = AccountServer
    extra = 0
    can_delete = False
    fields = readonly_fields = (
        "server_id", "name", "permission_names", "permissions_source", "added_at", "access",
    )

    def has_add_permission(self, request, obj=None):
        return False

    def get_queryset(self, request):
        """A server's token is never shown, so never decrypted."""
        return super().get_queryset(request).defer("token")

    @admin.display(description="Access")
    def access(self, obj):
        """Whether the app can still act there, as the provider last said."""
        if obj.access_lost_at is None:
            return "yes"
        return f"lost {utc_minutes(obj.access_lost_at)}: {obj.access_lost_reason}"

    @admin.display(description="Permissions")
    def permission_names(self, obj):
        """Named by the account's connector; the raw value when it names nothing."""
        return ", ".join(obj.permission_names) or obj.permissions or "none"


class ServiceFilter(admin.SimpleListFilter):
    """The registered connectors, where a field filter would scan every account for its values."""

    title = "service"
    parameter_name = "service_id"

    def lookups(self, request, model_admin):
        return [(connector.service_id, connector.name) for connector in registry]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(service_id=self.value())
        return queryset


class HeldMarksAdmin:
    """Atop the account list: "N accounts held back from needs-reconnect" per connector, Confirm and Dismiss.

    The brake on mass marking (connectors.brake) held them; the buttons call
    what ``manage.py confirm_marks`` calls, and put each account's mark (or
    its dismissal) on its History.
    """

    change_list_template = "admin/connectors/connectedaccount/held_marks_change_list.html"
    HELD_MARK_CHOICES = {"confirm": marks_confirm, "dismiss": marks_dismiss}

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        return [
            path(
                "held-marks/<str:service_id>/<str:choice>/",
                self.admin_site.admin_view(self.held_marks_view),
                name="%s_%s_held_marks" % info,
            ),
            *super().get_urls(),
        ]

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "held_marks": self._held_marks(request)}
        return super().changelist_view(request, extra_context)

    def _held_marks(self, request):
        can_act = self.has_act_permission(request)
        name = f"{self.admin_site.name}:{self.opts.app_label}_{self.opts.model_name}_held_marks"
        held = []
        for service_id, (count, since) in marks_held().items():
            connector = registry.connectors.get(service_id)
            buttons = can_act and connector is not None
            held.append({
                "service_id": service_id,
                "name": connector.name if connector is not None else service_id,
                "count": count,
                "since": utc_minutes(since),
                "confirm_url": reverse(name, args=[service_id, "confirm"]) if buttons else None,
                "dismiss_url": reverse(name, args=[service_id, "dismiss"]) if buttons else None,
            })
        return held

    @method_decorator(require_POST)
    def held_marks_view(self, request, service_id, choice):
        settle = self.HELD_MARK_CHOICES.get(choice)
        if settle is None or service_id not in registry.connectors:
            raise Http404("No such connector or choice.")
        if not self.has_act_permission(request):
            raise PermissionDenied
        record = (
            "Confirmed the held needs-reconnect mark" if choice == "confirm"
            else "Dismissed the held needs-reconnect mark"
        )
        done = settle(service_id, on_each=lambda account: self.log_change(request, account, record))
        name = registry.get(service_id).name
        if choice == "confirm":
            message = f"{name}: {done} account(s) marked needs reconnect; their users are told."
        else:
            message = f"{name}: dismissed {done} held mark(s); the accounts stay as they are."
        self.message_user(request, message, messages.SUCCESS)
        return redirect(f"{self.admin_site.name}:{self.opts.app_label}_{self.opts.model_name}_changelist")


class ActionsOnly:
    """Rows nobody adds or edits by hand: the actions do the work, for those allowed to ``act``."""

    # The model permission an action needs ("act" in an action's permissions).
    act_permission = "change"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_act_permission(self, request):
        return request.user.has_perm(f"{self.opts.app_label}.{self.act_permission}_{self.opts.model_name}")


@admin.register(ConnectedAccount)
class ConnectedAccountAdmin(HeldMarksAdmin, ActionsOnly, admin.ModelAdmin):
    """End users' accounts: searchable, filterable, never showing a token.

    Rows are made only by the connect flow; the actions call the same
    functions as the rest of the code (refresh, check, disconnect).
    """

    # Fits 1280 px beside the admin's menu and the filters: the name, username
    # and uid share one column, dates are short, the last error is cut short
    # (whole on hover and on the account's page, with when it was connected).
    list_display = ("account", "user", "status", "expires", "error")
    list_display_links = ("account",)
    list_filter = ("status", ServiceFilter)
    search_fields = ("user__username", "user__email", "uid", "username", "display_name")
    list_select_related = ("user",)
    exclude = ("access_token", "refresh_token")
    readonly_fields = (
        "user", "service_id", "uid", "username", "display_name", "avatar_url", "email",
        "token_type", "scopes", "expires_at", "status", "status_reason", "status_changed_at",
        "last_error", "last_error_at", "refreshed_at", "created_at", "updated_at",
    )
    inlines = [AccountServerInline]

    class Media:
        css = {"all": ["connectors/admin.css"]}
    actions = ["refresh_now", "check_grant", "revoke_and_delete"]

    @admin.display(description="Account", ordering="display_name")
    def account(self, obj):
        return format_html(
            '{}<br><span class="quiet">@{}<br>{}</span>',
            obj.display_name or obj.username or obj.uid, obj.username, obj.uid,
        )

    @admin.display(description="Expires", ordering="expires_at")
    def expires(self, obj):
        return utc_minutes(obj.expires_at)

    @admin.display(description="Last error", ordering="last_error_at")
    def error(self, obj):
        if not obj.last_error:
            return ""
        return format_html(
            '<span title="{}">{}</span>', obj.last_error, Truncator(obj.last_error).chars(32)
        )

    def get_queryset(self, request):
        # Drawing a list must not decrypt a single token.
        return super().get_queryset(request).defer("access_token", "refresh_token")

    def changelist_view(self, request, extra_context=None):
        if request.method == "GET":
            for notice in pause_notices():
                self.message_user(request, notice, messages.WARNING)
        return super().changelist_view(request, extra_context)

    def get_actions(self, request):
        # Deleting must go through the revocation, never around it.
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def delete_model(self, request, obj):
        if not account_disconnect(account=obj, connector=obj.connector):
            self.message_user(
                request, f"{obj}: revocation at the provider failed; deleted here.", messages.WARNING
            )

    def _each(self, request, queryset, work, done, *, record):
        """Run ``work`` on each account; tell the operator, and put it on the account's History."""
        for account in queryset:
            try:
                result = work(account)
            except ConnectorError as error:
                self.message_user(request, f"{account}: {error}", messages.ERROR)
                self.log_change(request, account, f"{record}: failed ({error})")
            else:
                self.message_user(request, f"{account}: {done(result)}", messages.SUCCESS)
                self.log_change(request, account, record)

    @admin.action(description="Refresh the token now", permissions=["act"])
    def refresh_now(self, request, queryset):
        self._each(
            request,
            queryset,
            account_refresh_now,
            self._refreshed_now,
            record="Refreshed the token now",
        )

    @staticmethod
    def _refreshed_now(result):
        if result.refreshed:
            return f"refreshed; expires {utc_minutes(result.account.expires_at)}."
        if result.grant is None:
            return f"{result.note} The provider offers no grant check."
        return f"{result.note} The grant check passed: scopes {result.grant['scopes'] or 'none'}."

    @admin.action(description="Check the grant at the provider", permissions=["act"])
    def check_grant(self, request, queryset):
        self._each(
            request,
            queryset,
            account_check,
            lambda info: f"scopes {info['scopes'] or 'none'}; expires {info['expires'] or 'unknown'}.",
            record="Checked the grant at the provider",
        )

    @admin.action(description="Revoke at the provider and delete", permissions=["delete"])
    def revoke_and_delete(self, request, queryset):
        for account in queryset:
            name = str(account)
            # On record before the row goes: the entry keeps its name and id.
            self.log_deletions(request, [account])
            if account_disconnect(account=account, connector=account.connector):
                self.message_user(request, f"{name}: revoked and deleted.", messages.SUCCESS)
            else:
                self.message_user(
                    request, f"{name}: deleted here, but revocation at the provider failed.", messages.WARNING
                )


@admin.register(PendingRevocation)
class PendingRevocationAdmin(ActionsOnly, admin.ModelAdmin):
    # Its action may delete the row it revokes.
    act_permission = "delete"

    """Grants kept to revoke again (connectors.revocations): listed, retried, deleted; tokens never shown.

    Rows are made only by a failed revocation; deleting one gives its grant up.
    """

    # Fits 1280 px beside the admin's menu and the filter: the connector and the
    # person share one column, as do when the grant was kept and when it is given up.
    list_display = ("grant", "what", "created", "attempts", "error")
    list_display_links = ("grant",)
    list_filter = (ServiceFilter,)
    search_fields = ("uid",)
    # Not even masked: the tokens are not read at all.
    exclude = ("access_token", "refresh_token")
    readonly_fields = ("service_id", "uid", "what", "created_at", "attempts", "last_attempt_at", "last_error")
    actions = ["retry_now"]

    class Media:
        css = {"all": ["connectors/admin.css"]}

    @admin.display(description="Grant", ordering="service_id")
    def grant(self, obj):
        try:
            name = registry.get(obj.service_id).name
        except UnknownConnector:
            name = obj.service_id
        return format_html('{}<br><span class="quiet">{}</span>', name, f"user {obj.uid}" if obj.uid else "user unknown")

    @admin.display(description="Created", ordering="created_at")
    def created(self, obj):
        return format_html(
            '{}<br><span class="quiet">gives up {}</span>', utc_minutes(obj.created_at), utc_minutes(gives_up_at(obj))
        )

    @admin.display(description="Last error", ordering="last_attempt_at")
    def error(self, obj):
        if not obj.last_error:
            return ""
        return format_html('<span title="{}">{}</span>', obj.last_error, Truncator(obj.last_error).chars(40))

    def get_queryset(self, request):
        return super().get_queryset(request).defer("access_token", "refresh_token")

    def changelist_view(self, request, extra_context=None):
        extra_context = {
            "title": "Pending revocations",
            "subtitle": "Grants no longer stored here (never stored, replaced by a reconnect, or "
            "disconnected) whose revocation the provider did not confirm; they are revoked again on "
            "every refresh_tokens run for 24 hours.",
            **(extra_context or {}),
        }
        return super().changelist_view(request, extra_context)

    def delete_model(self, request, obj):
        revocation_dropped(obj, by=request.user.get_username())
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            revocation_dropped(obj, by=request.user.get_username())
        super().delete_queryset(request, queryset)

    @admin.action(description="Try to revoke again now", permissions=["act"])
    def retry_now(self, request, queryset):
        """What every refresh_tokens run does, for the selected rows only."""
        for row in queryset:
            name = str(row)
            outcome = revocation_retry_one(row)
            if outcome == REVOKED:
                self.message_user(request, f"{name}: revoked.", messages.SUCCESS)
            elif outcome == GIVEN_UP:
                self.message_user(request, f"{name}: given up (the log says why).", messages.ERROR)
            elif outcome is None:
                self.message_user(request, f"{name}: another run is trying it now.", messages.INFO)
            else:
                row.refresh_from_db(fields=["last_error"])
                self.message_user(request, f"{name}: still pending ({row.last_error.rstrip('.')}).", messages.WARNING)
            self.log_change(request, row, f"Tried to revoke again: {outcome or 'held by another run'}")
