from django.core.management.base import BaseCommand, CommandError

from connectors.breaker import Breaker
from connectors.config import config_values
from connectors.exceptions import ConnectorError
from connectors.registry import registry, service_id_help


class Command(BaseCommand):
    help = (
        "Check a connector's stored credentials against the provider, the same checks "
        "as the admin's Test credentials button, and show whether its refreshes are paused "
        "(the circuit breaker); exits non-zero when any check fails or refreshes are paused."
    )

    def add_arguments(self, parser):
        parser.add_argument("service_id", help=service_id_help())

    def handle(self, *args, service_id, **options):
        try:
            connector = registry.get(service_id)
            results = connector.check_credentials(config_values(service_id))
        except ConnectorError as error:
            raise CommandError(str(error)) from error
        for result in results:
            self.stdout.write(self.line(result))
        state = Breaker(service_id).state()
        breaker = f"Refresh circuit breaker: {state.describe()}"
        self.stdout.write(self.style.ERROR(f"✗ {breaker}") if state.open else f"  {breaker}")
        failed = sum(not result.ok for result in results)
        if failed:
            raise CommandError(f"{failed} of {len(results)} checks failed.")
        if state.open:
            raise CommandError(
                "Refreshes are paused after timeouts or server errors in a row; they resume by "
                "themselves after the cool-down."
            )

    def line(self, result):
        if result.ok:
            return self.style.SUCCESS(f"✓ {result.name}: {result.detail}")
        hint = f" — {result.hint}" if result.hint else ""
        return self.style.ERROR(f"✗ {result.name}: {result.detail}{hint}")
