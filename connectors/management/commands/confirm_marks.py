from django.core.management.base import BaseCommand, CommandError

from connectors.audit import command_done
from connectors.brake import marks_confirm, marks_dismiss, marks_held
from connectors.exceptions import ConnectorError
from connectors.registry import registry, service_id_help


class Command(BaseCommand):
    help = (
        "Apply the needs-reconnect marks the brake on mass marking held back for a connector "
        "(more than MARK_BRAKE accounts refused within 10 minutes): each account is marked and "
        "its person mailed. With --dismiss the held marks are dropped instead and the accounts "
        "stay as they are; a later refusal may hold one again."
    )

    def add_arguments(self, parser):
        parser.add_argument("service_id", help=service_id_help())
        parser.add_argument(
            "--dismiss",
            action="store_true",
            help="Drop the held marks (the provider or a setting was at fault): no account is marked.",
        )

    def handle(self, *args, service_id, dismiss, **options):
        try:
            connector = registry.get(service_id)
        except ConnectorError as error:
            raise CommandError(str(error)) from error
        held, _ = marks_held().get(service_id, (0, None))
        if not held:
            self.stdout.write(f"No {connector.name} account is held back from needs-reconnect.")
            return
        if dismiss:
            done = marks_dismiss(service_id)
            line = f"dismissed {done} held mark(s) of {service_id}; the accounts stay as they are"
        else:
            done = marks_confirm(service_id)
            line = f"confirmed {done} held mark(s) of {service_id}: marked needs reconnect, their users told"
        self.stdout.write(line)
        if done:
            command_done("confirm_marks", line)
