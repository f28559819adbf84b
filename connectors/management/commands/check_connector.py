from django.core.management.base import BaseCommand, CommandError

from connectors.breaker import Breaker
from connectors.cache import before_call
from connectors.config import config_check, credentials_refusal
from connectors.exceptions import ConnectorError
from connectors.registry import registry, service_id_help


class Command(BaseCommand):
    help = (
        "Check a connector's stored credentials against the provider, the same checks "
        "as the admin's Test credentials button, and show whether its refreshes are paused "
        "(the circuit breaker) and whether the provider refused its credentials since they "
        "last passed; exits non-zero when any check fails or refreshes are paused."
    )

    def add_arguments(self, parser):
        parser.add_argument("service_id", help=service_id_help())

    def handle(self, *args, service_id, **options):
        try:
            connector = registry.get(service_id)
            refusal = credentials_refusal(service_id)
            results = config_check(connector)
            with before_call("check_connector"):
                state = Breaker(service_id).state()
        except ConnectorError as error:
            raise CommandError(str(error)) from error
        failed = sum(not result.ok for result in results)
        if refusal is not None:
            at, words = refusal
            refused = f"{connector.name} refused the client credentials at {at:%Y-%m-%d %H:%M} UTC: {words}"
            self.stdout.write(
                self.style.ERROR(f"✗ {refused}") if failed or not results
                else f"  {refused}; the checks below pass now, so that is cleared."
            )
        for result in results:
            self.stdout.write(self.line(result))
        breaker = f"Refresh circuit breaker: {state.describe()}"
        self.stdout.write(self.style.ERROR(f"✗ {breaker}") if state.open else f"  {breaker}")
        if failed:
            raise CommandError(f"{failed} of {len(results)} checks failed.")
        if refusal is not None and not results:
            raise CommandError(f"{connector.name} refused the client credentials; correct them in the admin.")
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
