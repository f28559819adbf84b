from django.core.management.base import BaseCommand, CommandError

from connectors.audit import command_done
from connectors.crypto import encryption_key_rotate
from connectors.exceptions import ConnectorError


class Command(BaseCommand):
    help = (
        "Re-encrypt every encrypted value in the database under the first key of "
        "FIELD_ENCRYPTION_KEY, in one transaction, so that the other keys can be "
        "removed. A value that no configured key decrypts stops it before anything "
        "is rewritten."
    )

    def handle(self, *args, **options):
        try:
            count = encryption_key_rotate()
        except ConnectorError as error:
            raise CommandError(str(error)) from error
        noun = "value" if count == 1 else "values"
        command_done("rotate_encryption_key", f"re-encrypted {count} {noun} under the first key")
        self.stdout.write(
            self.style.SUCCESS(
                f"Re-encrypted {count} {noun} under the first key of FIELD_ENCRYPTION_KEY. "
                "The other keys can now be removed."
            )
        )
