from django.core.management import CommandError

from connectors.audit import command_done
from connectors.management.commands.runserver import Command as RunserverCommand

from ...dev import WIRINGS, standin_start, standin_state_path


class Command(RunserverCommand):
    help = (
        "Django's development server with the local provider stand-ins beside it (DISCORD_EMULATOR "
        "is on): it starts the Discord and the Slack stand-in, which keep their people, grants and keys "
        "in .standin/state.json across restarts, and stores their credentials under appmixer:discord and "
        "appmixer:slack."
    )

    def inner_run(self, *args, **options):
        # inner_run is the serving process (the autoreloader's child), so the
        # stand-ins start exactly once, beside the code they serve.
        self.standins = {}
        state_path = standin_state_path()
        for provider, wiring in WIRINGS.items():
            try:
                standin, changed = standin_start(provider=provider, state_path=state_path)
            except OSError as error:
                self.stop_standins()
                raise CommandError(
                    f"The local {provider} stand-in could not start ({error}); "
                    f"set {wiring.port_setting} to a free port."
                ) from None
            self.standins[provider] = standin
            if changed:
                command_done("runserver", f"stored the stand-in's credentials in {wiring.service_id}: "
                                          f"{', '.join(changed)}")
        names = " and ".join(standin.provider for standin in self.standins.values())
        self.stdout.write(f"Local {names} stand-ins running (DISCORD_EMULATOR is on):")
        for provider, standin in self.standins.items():
            self.stdout.write(f"  {standin.provider} stand-in at {standin.base_url}; "
                              f"{WIRINGS[provider].service_id} holds its credentials.")
        if state_path:
            self.stdout.write(f"  They keep their people, grants and keys in {state_path} "
                              "(delete it to start afresh).")
        else:
            self.stdout.write("  They keep their state in memory only (STANDIN_STATE_PATH is None).")
        super().inner_run(*args, **options)

    def stop_standins(self):
        """Stops the stand-ins this command started (tests run it in-process, over and over)."""
        for standin in self.standins.values():
            standin.stop()
