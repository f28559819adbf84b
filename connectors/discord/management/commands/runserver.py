from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.staticfiles.management.commands.runserver import Command as RunserverCommand

from connectors.audit import command_done

from ...connector import DiscordConnector
from ...standin import standin_start

WILDCARDS = {"0", "0.0.0.0", "::"}


class Command(RunserverCommand):
    help = (
        "Django's development server; with DISCORD_EMULATOR on it also runs the local "
        "Discord stand-in and stores its credentials under appmixer:discord."
    )

    def inner_run(self, *args, **options):
        # inner_run is the serving process (the autoreloader's child), so what
        # follows happens exactly once, beside the code it serves.
        if settings.DEBUG:
            self.warn_if_elsewhere()
        if settings.DISCORD_EMULATOR:
            service_id = DiscordConnector.service_id
            self.standin, changed = standin_start(port=settings.DISCORD_EMULATOR_PORT)
            if changed:
                command_done("runserver", f"stored the stand-in's credentials in {service_id}: {', '.join(changed)}")
            self.stdout.write(
                f"Local Discord stand-in at {self.standin.base_url} (DISCORD_EMULATOR is on); "
                f"{service_id} now holds its credentials."
            )
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
