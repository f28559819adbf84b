"""The quick start: an admin user exists, and the stand-in says what it is."""

from io import StringIO

from django.contrib.auth import get_user_model
from django.core.management import call_command


def test_ensure_superuser_creates_one_admin_once(db):
    out = StringIO()
    call_command("ensure_superuser", stdout=out)
    assert "Created the admin user 'admin' with password" in out.getvalue()
    assert get_user_model().objects.get(username="admin").is_superuser
    again = StringIO()
    call_command("ensure_superuser", stdout=again)
    assert "log in at /admin/ as 'admin'" in again.getvalue()
    password = out.getvalue().split("with password ")[1].split()[0]
    assert get_user_model().objects.get(username="admin").check_password(password)
    assert password not in again.getvalue()
    assert get_user_model().objects.filter(is_superuser=True).count() == 1


def test_pages_say_plainly_when_they_talk_to_the_stand_in(client, settings, db):
    client.force_login(get_user_model().objects.create_user("gil", password="pw-gil-123"))
    settings.DISCORD_EMULATOR = True
    assert "local Discord stand-in" in client.get("/accounts/").content.decode()
    settings.DISCORD_EMULATOR = False
    assert "local Discord stand-in" not in client.get("/accounts/").content.decode()
