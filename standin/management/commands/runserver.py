from django.conf import settings

from connectors.audit import command_done
from connectors.discord.connector import DiscordConnector
from connectors.management.commands.runserver import Command as RunserverCommand

from ...dev import standin_start


class Command(RunserverCommand):
    help = (
        "Django's development server with the local Discord stand-in beside it (DISCORD_EMULATOR "
        "is on): it starts the stand-in and stores its credentials under appmixer:discord."
    )

    def inner_run(self, *args, **options):
        # inner_run is the serving process (the autoreloader's child), so the
        # stand-in starts exactly once, beside the code it serves.
        service_id = DiscordConnector.service_id
        self.standin, changed = standin_start(port=settings.DISCORD_EMULATOR_PORT)
        if changed:
            command_done("runserver", f"stored the stand-in's credentials in {service_id}: {', '.join(changed)}")
        self.stdout.write(
            f"Local Discord stand-in at {self.standin.base_url} (DISCORD_EMULATOR is on); "
            f"{service_id} now holds its credentials."
        )
        super().inner_run(*args, **options)
