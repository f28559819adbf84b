import re
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.staticfiles.management.commands.runserver import Command as StaticfilesRunserverCommand
from django.core.servers.basehttp import WSGIRequestHandler, WSGIServer

WILDCARDS = {"0", "0.0.0.0", "::"}

# A query string in a logged line: from "?" to the next blank (a request
# line's query holds none).
QUERY = re.compile(r"\?\S*")
# A Content-Length Django can read: ASCII digits, few enough for int().
CONTENT_LENGTH = re.compile(r"[0-9]{1,18}")


class RequestHandler(WSGIRequestHandler):
    """Django's development request handler, with two differences.

    Each line it logs (``django.server``: the request line, and the request
    line quoted in an error) names the path without its query string: a
    callback's holds the OAuth ``code`` and ``state``, which no log keeps.

    A Content-Length that is not 1–18 ASCII digits, or more than one, is
    answered 400 before Django reads it, as gunicorn and nginx answer it:
    Django reads it with ``int()``, so a "²" or 4,301 digits would otherwise
    be a 500 on any form posted.
    """

    def log_message(self, format, *args):
        super().log_message(format, *(QUERY.sub("", arg) if isinstance(arg, str) else arg for arg in args))

    def parse_request(self):
        if not super().parse_request():
            return False
        lengths = self.headers.get_all("Content-Length") or []
        if len(lengths) > 1 or any(not CONTENT_LENGTH.fullmatch(length.strip()) for length in lengths):
            self.send_error(400, "Bad Content-Length")
            return False
        return True


class Server(WSGIServer):
    """Django's development server, serving each request with RequestHandler.

    Django's ``run`` hands every server its own WSGIRequestHandler; this one
    puts RequestHandler in its place.
    """

    def __init__(self, server_address, _django_handler, *args, **kwargs):
        super().__init__(server_address, RequestHandler, *args, **kwargs)


class Command(StaticfilesRunserverCommand):
    help = (
        "Django's development server; with DEBUG on it warns when PUBLIC_BASE_URL, where "
        "Connect account sends the browser back, is not the address it serves. Its log names "
        "each request's path without the query string (a callback's holds the code and state)."
    )
    server_cls = Server

    def inner_run(self, *args, **options):
        # inner_run is the serving process (the autoreloader's child), so the
        # warning comes once, beside the code it serves.
        if settings.DEBUG:
            self.warn_if_elsewhere()
        super().inner_run(*args, **options)

    def warn_if_elsewhere(self):
        """Connect sends the browser back to PUBLIC_BASE_URL: say so when that is not here."""
        public = urlsplit(settings.PUBLIC_BASE_URL)
        port = public.port or {"http": 80, "https": 443}.get(public.scheme)
        if port == int(self.port) and (self.addr in WILDCARDS or public.hostname == self.addr.lower()):
            return
        address = f"[{self.addr}]:{self.port}" if self._raw_ipv6 else f"{self.addr}:{self.port}"
        self.stderr.write(
            self.style.WARNING(
                f"Warning: serving on {address}, but PUBLIC_BASE_URL is {settings.PUBLIC_BASE_URL}, "
                "where Connect account sends the browser back. Set PUBLIC_BASE_URL to the address "
                f"the browser uses for this server (`make run HOST={address}` writes it to .env)."
            )
        )
