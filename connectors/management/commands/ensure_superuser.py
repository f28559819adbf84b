import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Make sure an admin user exists, for the quick start: create 'admin' with a "
        "random password (printed once) if there is no superuser yet."
    )

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin", help="Name of the user to create.")

    def handle(self, *args, username, **options):
        users = get_user_model()
        existing = users.objects.filter(is_superuser=True).order_by("pk").first()
        if existing is not None:
            self.stdout.write(
                f"Admin: log in at /admin/ as {existing.get_username()!r} "
                "(`manage.py changepassword` if you forgot the password)."
            )
            return
        password = secrets.token_urlsafe(12)
        users.objects.create_superuser(username=username, email="", password=password)
        self.stdout.write(
            self.style.SUCCESS(
                f"Created the admin user {username!r} with password {password} — log in at "
                "/admin/ and change it (`manage.py changepassword`)."
            )
        )
