"""Who is calling: a service key in ``Authorization: Bearer``, nothing else.

No session, no cookie: a browser's credentials never reach the API, which is
why Django REST framework's CSRF check (made for session authentication)
has nothing to do here.

A refused key (wrong, malformed, revoked) is counted against the caller's
address (api.throttling.refused_key_wait); past API_AUTH_FAILURE_RATE the
refusal is a 429 with Retry-After instead of a 401. A valid key is looked up
first, and never refused by that count.
"""

from django.views.decorators.debug import sensitive_variables
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.permissions import BasePermission

from .keys import note_use, service_key_authenticate
from .models import TOKENS_READ
from .throttling import refused_key_wait


class ServiceKeyAuthentication(BaseAuthentication):
    keyword = b"bearer"

    @sensitive_variables("header", "parts")
    def authenticate(self, request):
        header = get_authorization_header(request)
        if not header:
            return None
        parts = header.split()
        if len(parts) != 2 or parts[0].lower() != self.keyword:
            self.refuse(request, "Send the key as: Authorization: Bearer <service key>.")
        try:
            presented = parts[1].decode("ascii")
        except UnicodeDecodeError:
            presented = ""
        key = service_key_authenticate(presented)
        if key is None:
            # The same answer for a wrong, unknown and revoked key, and never the key itself.
            self.refuse(request, "This service key is not valid, or was revoked.")
        note_use(key)
        return key, key

    def refuse(self, request, message):
        """401 with ``message``; 429 once the caller's address has had more refusals than API_AUTH_FAILURE_RATE."""
        wait = refused_key_wait(request)
        if wait is not None:
            raise exceptions.Throttled(wait, "Too many refused service keys from this address.")
        raise exceptions.AuthenticationFailed(message)

    def authenticate_header(self, request):
        # Makes a missing or refused key a 401 (with this challenge), not a 403.
        return 'Bearer realm="api"'


class HasScope(BasePermission):
    """The key holds the view's ``required_scope`` (``tokens:read`` unless it says otherwise)."""

    message = "This service key lacks the scope this endpoint needs."

    def has_permission(self, request, view):
        key = request.auth
        if key is None:
            raise exceptions.NotAuthenticated("Send a service key: Authorization: Bearer <service key>.")
        required = getattr(view, "required_scope", TOKENS_READ)
        if required not in key.scope_list:
            self.message = f"This service key lacks the scope {required}."
            return False
        return True
