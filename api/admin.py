from django import forms
from django.contrib import admin, messages
from django.template.response import TemplateResponse

from connectors.admin import utc_minutes

from .keys import service_key_issue, service_key_revoke
from .models import SCOPES, TOKENS_READ, ServiceKey


class ServiceKeyForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(
        choices=list(SCOPES.items()), widget=forms.CheckboxSelectMultiple, required=False,
        help_text="A key without a scope is refused by every endpoint (403).",
    )

    class Meta:
        model = ServiceKey
        fields = ["name", "scopes"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.initial["scopes"] = self.instance.scope_list if self.instance.pk else [TOKENS_READ]

    def clean_scopes(self):
        return " ".join(self.cleaned_data["scopes"])


@admin.register(ServiceKey)
class ServiceKeyAdmin(admin.ModelAdmin):
    """Keys are shown by their first characters only; the secret is shown once, on the page after Add."""

    form = ServiceKeyForm
    list_display = ("name", "starts_with", "scopes", "state", "last_used", "created_at")
    search_fields = ("name", "prefix")
    readonly_fields = ("starts_with", "created_at", "last_used", "revoked_at")
    actions = ["revoke"]

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["name", "scopes"]
        return ["name", "starts_with", "scopes", "created_at", "last_used", "revoked_at"]

    @admin.display(description="Key starts with", ordering="prefix")
    def starts_with(self, obj):
        return f"{obj.prefix}…"

    @admin.display(description="State", ordering="revoked_at")
    def state(self, obj):
        return "active" if obj.active else f"revoked {utc_minutes(obj.revoked_at)}"

    @admin.display(description="Last used", ordering="last_used_at")
    def last_used(self, obj):
        return utc_minutes(obj.last_used_at)

    def save_model(self, request, obj, form, change):
        if change:
            obj.save()
        else:
            # Held only until response_add shows it: never stored, never in a message cookie.
            obj.issued_secret = service_key_issue(obj)

    def response_add(self, request, obj, post_url_continue=None):
        secret = obj.__dict__.pop("issued_secret")
        return TemplateResponse(
            request,
            "admin/api/servicekey/created.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "key": obj,
                "secret": secret,
                "title": f"Service key {obj.name} created",
            },
        )

    @admin.action(description="Revoke the selected keys")
    def revoke(self, request, queryset):
        for key in queryset.filter(revoked_at__isnull=True):
            service_key_revoke(key)
            self.log_change(request, key, "Revoked")
            self.message_user(request, f"Revoked {key.name}: calls with it now get 401.", messages.SUCCESS)
