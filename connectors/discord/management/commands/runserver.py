from django.conf import settings
from django.contrib.staticfiles.management.commands.runserver import Command as RunserverCommand

from discord_standin import StandIn

from ...connector import DiscordConnector
from ...standin import store_standin_credentials


class Command(RunserverCommand):
    help = (
        "Django's development server; with DISCORD_EMULATOR on it also runs the local "
        "Discord stand-in and stores its credentials under appmixer:discord."
    )

    def inner_run(self, *args, **options):
        # inner_run is the serving process (the autoreloader's child), so the
        # stand-in runs exactly once, beside the code it serves.
        if settings.DISCORD_EMULATOR:
            standin = StandIn(port=settings.DISCORD_EMULATOR_PORT).start()
            store_standin_credentials()
            self.stdout.write(
                f"Local Discord stand-in at {standin.base_url} (DISCORD_EMULATOR is on); "
                f"{DiscordConnector.service_id} now holds its credentials."
            )
        super().inner_run(*args, **options)
