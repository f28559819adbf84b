"""Write a development .env with fresh keys; never overwrite an existing one.

Run by `make run` before Django can start, since the settings need these
values to load.
"""

import secrets
import sys
from pathlib import Path

from cryptography.fernet import Fernet

TEMPLATE = """\
# Written by `make run` for local development. Never commit this file.
DEBUG=true
SECRET_KEY={secret_key}
FIELD_ENCRYPTION_KEY={encryption_key}
PUBLIC_BASE_URL=http://127.0.0.1:8000
# The local Discord stand-in: Connect account works with no Discord
# application. Set to false (and enter real credentials in the admin) to
# talk to Discord.
DISCORD_EMULATOR=true
"""


def main(path):
    target = Path(path)
    if target.exists():
        return
    target.write_text(
        TEMPLATE.format(
            secret_key=secrets.token_urlsafe(50),
            encryption_key=Fernet.generate_key().decode(),
        )
    )
    target.chmod(0o600)
    print(f"Wrote {target} with a new SECRET_KEY and FIELD_ENCRYPTION_KEY.")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".env")
