"""Write a development .env with fresh keys; keep its PUBLIC_BASE_URL on `make run`'s HOST.

Run by `make run` before Django can start, since the settings need these
values to load: `write_env.py PATH [HOST]`. An existing file keeps its keys
and every other line; only a file this script wrote (its first line says so)
has its PUBLIC_BASE_URL brought in line with HOST.
"""

import re
import secrets
import sys
from pathlib import Path

from cryptography.fernet import Fernet

HEADER = "# Written by `make run` for local development. Never commit this file."
TEMPLATE = HEADER + """
DEBUG=true
SECRET_KEY={secret_key}
FIELD_ENCRYPTION_KEY={encryption_key}
# Follows `make run HOST=...`; delete the first line to keep your own.
PUBLIC_BASE_URL={public_base_url}
# The local Discord and Slack stand-ins: Connect works with no Discord or
# Slack app. Set to false (and enter real credentials in the admin) to talk
# to Discord and Slack.
DISCORD_EMULATOR=true
"""
DEFAULT_HOST = "127.0.0.1:8000"
PUBLIC_LINE = re.compile(r"^PUBLIC_BASE_URL=.*$", re.MULTILINE)


def public_base_url(host):
    """The URL a browser uses for runserver's address (`8500`, `0.0.0.0:8500`, `[::1]:8500`)."""
    address, _, port = host.rpartition(":")
    if address in ("", "0.0.0.0", "0", "[::]"):
        address = "127.0.0.1"
    return f"http://{address}:{port}"


def main(path, host=DEFAULT_HOST):
    target = Path(path)
    url = public_base_url(host)
    if not target.exists():
        target.write_text(
            TEMPLATE.format(
                secret_key=secrets.token_urlsafe(50),
                encryption_key=Fernet.generate_key().decode(),
                public_base_url=url,
            )
        )
        target.chmod(0o600)
        print(f"Wrote {target} with a new SECRET_KEY and FIELD_ENCRYPTION_KEY.")
        return
    text = target.read_text()
    if not text.startswith(HEADER):
        return
    line = f"PUBLIC_BASE_URL={url}"
    updated = PUBLIC_LINE.sub(line, text, count=1) if PUBLIC_LINE.search(text) else text + line + "\n"
    if updated != text:
        target.write_text(updated)
        print(f"Set {line} in {target} (HOST is {host}).")


if __name__ == "__main__":
    main(*(sys.argv[1:3] or [".env"]))
