import getpass
import os
import sys

from django.core.management.base import BaseCommand, CommandError

from connectors.audit import command_done
from connectors.config import config_update
from connectors.exceptions import ConnectorError, InvalidConfiguration
from connectors.registry import registry, service_id_help


def split_pair(option, text):
    """KEY=VALUE; the text is never echoed back, since it may hold a secret."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise CommandError(f"{option} expects KEY=VALUE (the key, an '=', then the value).")
    return key, value


def read_stdin(key):
    """One line: a prompt that does not echo on a terminal, else the piped value."""
    if sys.stdin.isatty():
        return getpass.getpass(f"{key}: ")
    line = sys.stdin.readline()
    if not line:
        raise CommandError(f"--set-from-stdin {key}: standard input is empty.")
    return line.removesuffix("\n").removesuffix("\r")


def refusal(error):
    """Every refused key with its reason, so one run fixes them all."""
    lines = ["Nothing was changed. Refused:"]
    lines += [f"  {key}: {message}" for key, message in error.errors.items()]
    return "\n".join(lines)


class Command(BaseCommand):
    help = (
        "Set or clear a connector's configuration values, with the same checks as the "
        "admin. Prefer --set-from-env or --set-from-stdin for secrets: a value given "
        "on the command line stays in the shell history."
    )

    def add_arguments(self, parser):
        parser.add_argument("service_id", help=service_id_help())
        parser.add_argument(
            "--set",
            dest="set_pairs",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="Set KEY to VALUE. Repeatable. Secrets given this way land in the shell history.",
        )
        parser.add_argument(
            "--set-from-env",
            dest="env_pairs",
            action="append",
            default=[],
            metavar="KEY=VARIABLE",
            help="Set KEY to the value of the environment variable VARIABLE. Repeatable.",
        )
        parser.add_argument(
            "--set-from-stdin",
            dest="stdin_key",
            metavar="KEY",
            help="Set KEY to one line read from standard input (prompted, without echo, on a terminal).",
        )
        parser.add_argument(
            "--clear",
            dest="clear_keys",
            action="append",
            default=[],
            metavar="KEY",
            help="Remove the stored value of KEY. Repeatable.",
        )

    def handle(self, *args, service_id, set_pairs, env_pairs, stdin_key, clear_keys, **options):
        if not (set_pairs or env_pairs or stdin_key or clear_keys):
            raise CommandError("Nothing to do: give --set, --set-from-env, --set-from-stdin or --clear.")
        try:
            connector = registry.get(service_id)
            values = self.collect(connector, set_pairs, env_pairs, stdin_key, clear_keys)
            changed = config_update(service_id=service_id, values=values, clear=clear_keys)
        except InvalidConfiguration as error:
            raise CommandError(refusal(error)) from error
        except ConnectorError as error:
            raise CommandError(str(error)) from error
        if changed:
            command_done("configure_connector", f"updated {service_id}: {', '.join(changed)}")
            self.stdout.write(self.style.SUCCESS(f"Updated {service_id}: {', '.join(changed)}."))
        else:
            self.stdout.write("No change.")

    def collect(self, connector, set_pairs, env_pairs, stdin_key, clear_keys):
        """Gather every value before anything is written; a key may come from one source only."""
        given = [split_pair("--set", pair) for pair in set_pairs]
        from_env = [split_pair("--set-from-env", pair) for pair in env_pairs]
        keys = [key for key, _ in given + from_env] + ([stdin_key] if stdin_key else []) + clear_keys
        repeated = sorted({key for key in keys if keys.count(key) > 1})
        if repeated:
            raise CommandError(f"Each key may be given once; repeated: {', '.join(repeated)}.")
        self.warn_shell_history(connector, [key for key, _ in given])
        values = dict(given)
        values.update((key, self.from_env(key, variable)) for key, variable in from_env)
        if stdin_key:
            values[stdin_key] = read_stdin(stdin_key)
        return values

    def from_env(self, key, variable):
        try:
            return os.environ[variable]
        except KeyError:
            raise CommandError(
                f"The environment variable {variable} (for {key}) is not set."
            ) from None

    def warn_shell_history(self, connector, keys):
        secret = [key for key in keys if key in connector.secret_keys]
        if secret:
            self.stderr.write(
                f"Warning: {', '.join(secret)} given with --set now sits in your shell "
                "history; next time use --set-from-env KEY=VARIABLE or --set-from-stdin KEY.",
                style_func=self.style.WARNING,
            )
