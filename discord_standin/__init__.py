"""Local Discord stand-in: a real HTTP server for tests, benchmarks and offline development.

See discord_standin/server.py for the behaviour and README-style notes there.
"""

from discord_standin.server import DEFAULT_APP, App, Code, Grant, Guild, StandIn, User

__all__ = ["DEFAULT_APP", "App", "Code", "Grant", "Guild", "StandIn", "User"]
