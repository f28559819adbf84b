"""Operators' changes on record: who did what, and when (the log line's time); never a value.

The admin writes Django's own LogEntry rows (its History pages); a
management command that changes something writes one line here, under the
``connectors.audit`` logger.
"""

import getpass
import logging

logger = logging.getLogger("connectors.audit")


def command_done(command, what):
    """One line for a command that changed something: ``what`` names keys and counts only."""
    logger.info("%s by %s: %s", command, _operator(), what)


def _operator():
    """The account the command runs under: on a shell, the operator."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "an unknown user"
