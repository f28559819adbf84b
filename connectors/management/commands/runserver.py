from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.staticfiles.management.commands.runserver import Command as StaticfilesRunserverCommand

WILDCARDS = {"0", "0.0.0.0", "::"}


class Command(StaticfilesRunserverCommand):
    help = (
        "Django's development server; with DEBUG on it warns when PUBLIC_BASE_URL, where "
        "Connect account sends the browser back, is not the address it serves."
    )

    def inner_run(self, *args, **options):
        # inner_run is the serving process (the autoreloader's child), so the
        # warning comes once, beside the code it serves.
        if settings.DEBUG:
            self.warn_if_elsewhere()
        super().inner_run(*args, **options)

    def warn_if_elsewhere(self):
        """Connect sends the browser back to PUBLIC_BASE_URL: say so when that is not here."""
        public = urlsplit(settings.PUBLIC_BASE_URL)
        port = public.port or {"http": 80, "https": 443}.get(public.scheme)
        if port == int(self.port) and (self.addr in WILDCARDS or public.hostname == self.addr.lower()):
            return
        address = f"[{self.addr}]:{self.port}" if self._raw_ipv6 else f"{self.addr}:{self.port}"
        self.stderr.write(
            self.style.WARNING(
                f"Warning: serving on {address}, but PUBLIC_BASE_URL is {settings.PUBLIC_BASE_URL}, "
                "where Connect account sends the browser back. Set PUBLIC_BASE_URL to the address "
                f"the browser uses for this server (`make run HOST={address}` writes it to .env)."
            )
        )
