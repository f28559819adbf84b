"""Stand-ins for the providers the connectors talk to, for development, tests and benchmarks.

A Django app installed only with DISCORD_EMULATOR on (settings); production
code never imports it. Each provider's stand-in is a package of its own
(``standin.discord``, ``standin.slack``) on the machinery in ``standin.base``,
which needs only the standard library, so that a benchmark can run one as a
plain process.
"""
