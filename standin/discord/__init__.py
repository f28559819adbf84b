"""The local Discord stand-in: the parts of Discord the Backoffice talks to.

Behaviour follows /work/shared/discord-api.md. The notes on each part live
beside it: ``oauth`` (the consent page, the token endpoint, the revocation),
``rest`` (the API and the CDN's avatars), ``bot`` (a server's channels, the
bot's messages), ``events`` (signed webhook events, "remove the app"),
``ratelimit`` (buckets, the global limit, 429s); what every stand-in shares (faults, slow answers, the control
API) is in ``standin.base``. ``python -m standin.discord`` runs it alone.
"""

from .server import StandIn
from .state import DEFAULT_APP, App, Code, Grant, Guild, User

__all__ = ["DEFAULT_APP", "App", "Code", "Grant", "Guild", "StandIn", "User"]
