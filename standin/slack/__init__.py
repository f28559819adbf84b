"""The local Slack stand-in: the parts of Slack the Backoffice talks to.

The notes on each part live beside it: ``oauth`` (the consent page,
``oauth.v2.access``: the code exchange and the refresh), ``api`` (the Web API
methods ``auth.revoke`` and ``auth.test``, Slack's ``"ok": false`` errors);
what every stand-in shares (faults, slow answers, the control API) is in
``standin.base``. ``python -m standin.slack`` runs it alone.
"""

from .server import StandIn
from .state import DEFAULT_APP, App, Code, Grant, User, Workspace

__all__ = ["DEFAULT_APP", "App", "Code", "Grant", "StandIn", "User", "Workspace"]
