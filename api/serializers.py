"""The API's JSON, declared once for the answers and for the OpenAPI schema.

What a query may hold is declared here as the schema publishes it (lengths,
a pattern, an enum), so that nothing the schema allows is refused, and the
API answers JSON whatever the Accept header asks (JSONWhateverAccepted).
"""

from django.http import Http404
from drf_spectacular.utils import extend_schema_field
from rest_framework import exceptions, serializers
from rest_framework.negotiation import DefaultContentNegotiation

from connectors.registry import registry

# Django's usernames are at most 150 characters.
USERNAME_MAX_LENGTH = 150
# No text column takes a NUL (PostgreSQL refuses it), so Django REST
# framework refuses it in every CharField; the schema says so.
WITHOUT_NUL = r"^[^\x00]*$"


class JSONWhateverAccepted(DefaultContentNegotiation):
    """An Accept header or ``?format=`` that none of a view's renderers meets gets its first one, not 406 or 404.

    RFC 9110 lets a server disregard an Accept it cannot meet. The API's views
    have one renderer, JSON, so they answer JSON to every request; the schema
    view keeps its YAML, and its JSON for ``?format=json``.
    """

    def select_renderer(self, request, renderers, format_suffix=None):
        wanted = format_suffix or request.query_params.get(self.settings.URL_FORMAT_OVERRIDE)
        # The format asked for, when a renderer has it, whatever Accept says.
        renderers = [renderer for renderer in renderers if renderer.format == wanted] or renderers
        try:
            return super().select_renderer(request, renderers, format_suffix)
        except (exceptions.NotAcceptable, Http404):
            return renderers[0], renderers[0].media_type


class ServerSerializer(serializers.Serializer):
    id = serializers.CharField(source="server_id", help_text="The provider's id of the server or workspace.")
    name = serializers.CharField()
    permissions = serializers.CharField(help_text="What the app may do there, as the provider encodes it.")


class AccountSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    service = serializers.CharField(source="service_id", help_text="e.g. appmixer:discord")
    uid = serializers.CharField(help_text="The user's id at the provider.")
    username = serializers.CharField()
    status = serializers.ChoiceField(choices=["active", "needs_reconnect"])
    scopes = serializers.ListField(child=serializers.CharField(), source="scope_list")
    expires_at = serializers.DateTimeField(allow_null=True, help_text="When the access token expires; null: never.")
    servers = ServerSerializer(many=True)


class AccountListSerializer(serializers.Serializer):
    accounts = AccountSerializer(many=True)


@extend_schema_field(
    {"type": "string", "minLength": 1, "maxLength": USERNAME_MAX_LENGTH, "pattern": WITHOUT_NUL, "example": "alice"}
)
class UsernameField(serializers.CharField):
    """A username as given: not trimmed (" alice" names nobody, it is not refused), no NUL, at most 150 characters."""

    def __init__(self, **kwargs):
        super().__init__(max_length=USERNAME_MAX_LENGTH, trim_whitespace=False, **kwargs)


class AccountQuerySerializer(serializers.Serializer):
    user = UsernameField(help_text="The end user's username.")
    service = serializers.ChoiceField(
        choices=[], required=False, help_text="Only this connector's accounts, e.g. appmixer:discord.",
        error_messages={"invalid_choice": "No connector has the service id {input!r}."},
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The connectors registered when asked, for the answer and for the schema's enum alike.
        self.fields["service"].choices = sorted(connector.service_id for connector in registry)


class TokenSerializer(serializers.Serializer):
    access_token = serializers.CharField()
    token_type = serializers.CharField(help_text="e.g. Bearer")
    expires_at = serializers.DateTimeField(allow_null=True)
    scopes = serializers.ListField(child=serializers.CharField())


class HealthSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["ok"])
    key = serializers.CharField(help_text="The name of the service key that called.")


class ErrorSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Stable, for programs: e.g. invalid_key, needs_reconnect.")
    message = serializers.CharField(help_text="For people.")
