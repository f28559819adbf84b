"""The errors the connector framework raises.

They carry messages safe to show a person: never a secret, a token or a raw
provider body. Views, the admin and commands turn them into messages; code
below them only raises.
"""


class ConnectorError(Exception):
    """Base of every error the connector framework raises on purpose."""


class UnknownConnector(ConnectorError):
    def __init__(self, service_id):
        super().__init__(f"No connector is registered under {service_id!r}.")
        self.service_id = service_id


class InvalidConfiguration(ConnectorError):
    """One or more configuration values were refused; nothing was saved."""

    def __init__(self, errors):
        self.errors = dict(errors)
        super().__init__(
            "; ".join(f"{key}: {message}" for key, message in self.errors.items())
        )


class NotSupported(ConnectorError):
    """The connector's provider offers no such operation (a revocation, a grant's description)."""


class NotConfigured(ConnectorError):
    """The connector lacks a value the operation needs."""


class EncryptionKeyError(ConnectorError):
    """A stored value does not decrypt under any key in FIELD_ENCRYPTION_KEY."""


class ProviderError(ConnectorError):
    """The provider answered with an error or did not answer."""


class ProviderUnavailable(ProviderError):
    """Timeout, connection failure or 5xx: worth trying again later."""


class RateLimited(ProviderUnavailable):
    def __init__(self, message, retry_after=None):
        super().__init__(message)
        self.retry_after = retry_after


class CircuitOpen(ProviderUnavailable):
    """Refreshes are paused everywhere after a run of timeouts or server errors."""

    def __init__(self, message, retry_after=None):
        super().__init__(message)
        self.retry_after = retry_after


class ProviderRejected(ProviderError):
    """The provider refused the request (4xx other than rate limits)."""

    def __init__(self, message, status=None, code=None):
        super().__init__(message)
        self.status = status
        self.code = code


class AccessLost(ProviderRejected):
    """The app can no longer act in a server: it was removed there, or its permissions were."""


class Unauthorized(ProviderRejected):
    """A token or the client credentials were not accepted."""


class InvalidGrant(ProviderRejected):
    """The code or refresh token is bad, used, expired or revoked."""


class RefreshNotStored(ConnectorError):
    """The provider rotated the tokens, but the database would not take the new pair."""


class FlowError(ConnectorError):
    """The browser came back from the provider with something we cannot use."""


class StateMismatch(FlowError):
    """The state is missing, unknown, used, expired or from another session."""


class AccessDenied(FlowError):
    """The person pressed Cancel at the provider."""


class AuthorizationFailed(FlowError):
    """The provider sent an error other than a refusal, or no code."""


class EventRefused(ConnectorError):
    """A request to the events endpoint that cannot be shown to come from the provider."""


class NeedsReconnect(ConnectorError):
    """The account's grant is gone at the provider; only the user can renew it."""

    def __init__(self, message, account_id=None):
        super().__init__(message)
        self.account_id = account_id
