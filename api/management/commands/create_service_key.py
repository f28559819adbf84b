from django.core.management.base import BaseCommand, CommandError

from connectors.audit import command_done

from ...keys import service_key_create
from ...models import SCOPES, TOKENS_READ, ServiceKey


class Command(BaseCommand):
    help = (
        "Create a service key for another service to call the HTTP API with. "
        "The key is printed once, alone on the last line; only its digest is stored."
    )

    def add_arguments(self, parser):
        parser.add_argument("name", help="Who uses the key, e.g. workflow-engine (unique).")
        parser.add_argument(
            "--scope", action="append", choices=sorted(SCOPES), dest="scopes",
            help=f"What the key may do; repeat for several (default: {TOKENS_READ}).",
        )

    def handle(self, *args, name, scopes, **options):
        if ServiceKey.objects.filter(name=name).exists():
            raise CommandError(f"A service key named {name!r} exists already; revoke it in the admin or pick another name.")
        key, secret = service_key_create(name=name, scopes=scopes or [TOKENS_READ])
        command_done("create_service_key", f"key {key.name!r} ({key.prefix}…, {key.scopes})")
        self.stdout.write(self.style.SUCCESS(
            f"Created service key {key.name!r} with {key.scopes}. It is shown this once; store it now:"
        ))
        self.stdout.write(secret)
