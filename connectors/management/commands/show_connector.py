import json

from django.core.management.base import BaseCommand, CommandError

from connectors.config import config_summary
from connectors.exceptions import ConnectorError
from connectors.registry import registry, service_id_help


class Command(BaseCommand):
    help = (
        "Show a connector's configuration: each key, whether it is set, secrets "
        "masked to their last 4 characters, and the redirect URL to register at "
        "the provider."
    )

    def add_arguments(self, parser):
        parser.add_argument("service_id", help=service_id_help())
        parser.add_argument(
            "--json", dest="as_json", action="store_true", help="Print one JSON object, for scripts."
        )

    def handle(self, *args, service_id, as_json, **options):
        try:
            connector = registry.get(service_id)
            summary = config_summary(service_id)
        except ConnectorError as error:
            raise CommandError(str(error)) from error
        if as_json:
            self.write_json(connector, summary)
        else:
            self.write_text(connector, summary)

    def write_json(self, connector, summary):
        document = {
            "service_id": connector.service_id,
            "redirect_url": connector.redirect_url(),
            "keys": {
                item["key"]: {"set": item["set"], "secret": item["secret"], "value": item["value"]}
                for item in summary
            },
        }
        # ASCII escapes, so that a script reads it whatever the terminal's encoding.
        self.stdout.write(json.dumps(document, indent=2))

    def write_text(self, connector, summary):
        self.stdout.write(f"{connector.name} ({connector.service_id})")
        key_width = max(len(item["key"]) for item in summary)
        label_width = max(len(item["label"]) for item in summary)
        for item in summary:
            shown = item["value"] if item["set"] else self.style.WARNING("not set")
            self.stdout.write(
                f"  {item['key']:<{key_width}}  {item['label']:<{label_width}}  {shown}"
            )
        self.stdout.write(f"Redirect URL: {connector.redirect_url()}")

