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


class CredentialsRefused(Unauthorized):
    """The provider refused the app's own credentials (invalid_client): the connector is at fault, no account."""


class NothingToRefresh(ConnectorError):
    """The account holds no refresh token (a token that does not expire): there is nothing to refresh."""


class InvalidGrant(ProviderRejected):
    """The code or refresh token is bad, used, expired or revoked."""


class ServiceUnavailable(ConnectorError):
    """Our own infrastructure (the shared cache, the database) failed, not the provider.

    Never a ProviderError: a caller must not be told that the provider failed
    when we did. Raised before a call, it means nothing was sent.
    """

    # Seconds to suggest before trying again: a blip of ours is short.
    DEFAULT_RETRY_AFTER = 10

    def __init__(self, message, retry_after=None):
        super().__init__(message)
        self.retry_after = self.DEFAULT_RETRY_AFTER if retry_after is None else retry_after


class RefreshNotStored(ServiceUnavailable):
    """The provider rotated the tokens, but the database would not take the new pair."""


class MarkHeld(ServiceUnavailable):
    """The brake on mass marking held this account's needs-reconnect back (connectors.brake).

    Too many accounts of one connector were refused within a few minutes:
    the provider, or a setting of ours, may be at fault rather than the
    people. The account keeps its status until an operator confirms the
    mark or dismisses it; meanwhile it is not refreshed.
    """

    # Seconds to suggest: the brake's window (connectors.brake.MARK_BRAKE_WINDOW).
    DEFAULT_RETRY_AFTER = 600
    MESSAGE = (
        "This account is being checked: the provider refused many accounts at once, and the "
        "operator is confirming whether this one must be reconnected. Try again later."
    )

    def __init__(self, message=None, retry_after=None, account_id=None):
        super().__init__(message or self.MESSAGE, retry_after)
        self.account_id = account_id


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
