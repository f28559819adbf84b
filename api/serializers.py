"""The API's JSON, declared once for the answers and for the OpenAPI schema."""

from rest_framework import serializers


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


class AccountQuerySerializer(serializers.Serializer):
    user = serializers.CharField(help_text="The end user's username.")
    service = serializers.CharField(required=False, help_text="Only this connector's accounts, e.g. appmixer:discord.")


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
