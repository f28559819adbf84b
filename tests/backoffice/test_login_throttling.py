"""Login throttling (django-axes): wrong passwords lock one username from one address.

The settings are the project's own (tests/settings.py changes none of them):
10 failures, a cool-off of an hour, the address from REMOTE_ADDR alone.
"""

import io
import runpy
from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.conf import settings as django_settings
from django.core.management import call_command
from django.db.models import F

from tests.helpers import REPO, configure_from_env

PAGES = ["/accounts/login/", "/admin/login/"]
PASSWORD = "pw-alice-123"  # alice's, tests/conftest.py
LOCKED = "Sign-in is locked for a while"


@pytest.fixture(autouse=True)
def _quick_password_checks(settings):
    """Dozens of wrong passwords per test: a fast hasher keeps each check from taking 0.3 s.
    Autouse, so the users the tests sign in as are stored with it too."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def opal(django_user_model):
    """An operator, who signs in on /admin/login/."""
    return django_user_model.objects.create_superuser("opal", "opal@example.com", "pw-opal-123")


def sign_in(client, page, username, password, **extra):
    return client.post(page, {"username": username, "password": password}, **extra)


def signed_in(client, user):
    return client.session.get("_auth_user_id") == str(user.pk)


def fail_until_locked(client, page, username, **extra):
    """Wrong passwords up to the limit: every one but the last gets the form again."""
    limit = django_settings.AXES_FAILURE_LIMIT
    for attempt in range(1, limit + 1):
        response = sign_in(client, page, username, f"wrong-{attempt}", **extra)
        expected = 429 if attempt == limit else 200
        assert response.status_code == expected, (attempt, response.content[:300])
    return response


def text(response):
    """The page's text as read: Django writes "1 hour" with a no-break space."""
    return response.content.decode().replace("\xa0", " ")


def assert_lockout_page(response):
    assert response.status_code == 429
    html = text(response)
    assert LOCKED in html
    assert "Please try again in 1 hour" in html
    assert "<title>Sign-in locked · Backoffice</title>" in html  # base.html around it
    assert 3540 <= int(response["Retry-After"]) <= 3600


def test_the_defaults_are_ten_failures_an_hour_and_the_socket_address():
    assert django_settings.AXES_ENABLED is not False
    assert django_settings.AXES_FAILURE_LIMIT == 10
    assert django_settings.AXES_COOLOFF_TIME == timedelta(hours=1)
    assert django_settings.AXES_LOCKOUT_PARAMETERS == [["username", "ip_address"]]
    assert django_settings.AXES_IPWARE_META_PRECEDENCE_ORDER == ("REMOTE_ADDR",)


@pytest.mark.parametrize("page", PAGES)
def test_after_ten_wrong_passwords_the_right_one_is_refused_with_our_page(client, alice, opal, page):
    user = opal if page.startswith("/admin/") else alice
    password = "pw-opal-123" if user is opal else PASSWORD
    assert_lockout_page(fail_until_locked(client, page, user.username))

    refused = sign_in(client, page, user.username, password)
    assert_lockout_page(refused)
    assert not signed_in(client, user)


@pytest.mark.parametrize("failed_on, refused_on", [PAGES, PAGES[::-1]])
def test_a_lock_earned_on_one_login_page_holds_on_the_other(client, opal, failed_on, refused_on):
    fail_until_locked(client, failed_on, "opal")
    assert_lockout_page(sign_in(client, refused_on, "opal", "pw-opal-123"))
    assert not signed_in(client, opal)


def test_fewer_failures_than_the_limit_lock_nothing_and_a_success_starts_the_count_again(client, alice):
    for attempt in range(9):
        assert sign_in(client, "/accounts/login/", "alice", f"wrong-{attempt}").status_code == 200
    assert sign_in(client, "/accounts/login/", "alice", PASSWORD).status_code == 302
    assert signed_in(client, alice)
    client.logout()
    for attempt in range(9):
        assert sign_in(client, "/accounts/login/", "alice", f"wrong-again-{attempt}").status_code == 200
    assert sign_in(client, "/accounts/login/", "alice", PASSWORD).status_code == 302


def test_another_username_from_the_same_address_is_still_allowed(client, alice, django_user_model):
    bob = django_user_model.objects.create_user("bob", password="pw-bob-123")
    fail_until_locked(client, "/accounts/login/", "alice")
    assert sign_in(client, "/accounts/login/", "bob", "pw-bob-123").status_code == 302
    assert signed_in(client, bob)


def test_the_same_username_from_another_address_is_still_allowed(client, alice):
    fail_until_locked(client, "/accounts/login/", "alice", REMOTE_ADDR="198.51.100.7")
    assert sign_in(client, "/accounts/login/", "alice", PASSWORD, REMOTE_ADDR="198.51.100.7").status_code == 429
    assert sign_in(client, "/accounts/login/", "alice", PASSWORD, REMOTE_ADDR="198.51.100.8").status_code == 302
    assert signed_in(client, alice)


def age_failures(by):
    """Move every recorded failure into the past, as if that much time had gone by."""
    AccessAttempt.objects.update(attempt_time=F("attempt_time") - by)


def test_the_right_password_works_again_once_the_cool_off_has_passed(client, alice):
    fail_until_locked(client, "/accounts/login/", "alice")

    age_failures(timedelta(minutes=58))
    still = sign_in(client, "/accounts/login/", "alice", PASSWORD)
    assert still.status_code == 429
    assert "Please try again in 2 minutes" in text(still)
    assert 110 <= int(still["Retry-After"]) <= 120
    # Refused tries are not counted: they do not push the end of the lock back.
    age_failures(timedelta(minutes=2, seconds=1))
    assert sign_in(client, "/accounts/login/", "alice", PASSWORD).status_code == 302
    assert signed_in(client, alice)


def test_a_shorter_cool_off_from_the_settings_ends_sooner(client, alice, settings):
    settings.AXES_COOLOFF_TIME = timedelta(minutes=5)
    fail_until_locked(client, "/accounts/login/", "alice")
    assert 240 <= int(sign_in(client, "/accounts/login/", "alice", PASSWORD)["Retry-After"]) <= 300
    age_failures(timedelta(minutes=5, seconds=1))
    assert sign_in(client, "/accounts/login/", "alice", PASSWORD).status_code == 302


@pytest.mark.parametrize("command", [["axes_reset"], ["axes_reset_username", "alice"]])
def test_the_reset_commands_lift_a_lock(client, alice, command):
    fail_until_locked(client, "/accounts/login/", "alice")
    out = io.StringIO()
    call_command(*command, stdout=out)
    assert "attempts removed" in out.getvalue()
    assert sign_in(client, "/accounts/login/", "alice", PASSWORD).status_code == 302
    assert signed_in(client, alice)


def test_a_forwarded_for_header_is_ignored_by_default(client, alice):
    """An attacker cannot claim a fresh address for each try with X-Forwarded-For."""
    limit = django_settings.AXES_FAILURE_LIMIT
    for attempt in range(1, limit + 1):
        response = sign_in(
            client, "/accounts/login/", "alice", f"wrong-{attempt}", HTTP_X_FORWARDED_FOR=f"203.0.113.{attempt}"
        )
    assert response.status_code == 429
    refused = sign_in(client, "/accounts/login/", "alice", PASSWORD, HTTP_X_FORWARDED_FOR="203.0.113.99")
    assert_lockout_page(refused)
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {"127.0.0.1"}


@pytest.mark.parametrize(
    "proxies, header",
    [
        # nginx appends the address it saw to what the client sent.
        (1, "{spoof}, {client}"),
        # A CDN appends the client's, then nginx appends the CDN's.
        (2, "{spoof}, {client}, 192.0.2.50"),
    ],
)
def test_the_proxy_header_is_honoured_when_the_settings_name_it(client, alice, settings, monkeypatch, proxies, header):
    configure_from_env(
        settings, monkeypatch, LOGIN_IP_HEADER="HTTP_X_FORWARDED_FOR", LOGIN_PROXY_COUNT=str(proxies)
    )
    proxy = {"REMOTE_ADDR": "10.0.0.2"}

    def through_proxy(client_address, spoof):
        return {**proxy, "HTTP_X_FORWARDED_FOR": header.format(spoof=spoof, client=client_address)}

    limit = django_settings.AXES_FAILURE_LIMIT
    for attempt in range(1, limit + 1):
        # The attacker writes a new address each time; only the proxies' part counts.
        response = sign_in(
            client, "/accounts/login/", "alice", f"wrong-{attempt}", **through_proxy("198.51.100.7", f"203.0.113.{attempt}")
        )
    assert response.status_code == 429
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {"198.51.100.7"}
    assert_lockout_page(sign_in(client, "/accounts/login/", "alice", PASSWORD, **through_proxy("198.51.100.7", "203.0.113.99")))

    # Someone else behind the same proxy is another address.
    allowed = sign_in(client, "/accounts/login/", "alice", PASSWORD, **through_proxy("198.51.100.8", "203.0.113.7"))
    assert allowed.status_code == 302
    assert signed_in(client, alice)


def test_a_proxy_header_needs_at_least_one_proxy(monkeypatch):
    from django.core.exceptions import ImproperlyConfigured

    monkeypatch.setenv("LOGIN_IP_HEADER", "HTTP_X_REAL_IP")
    monkeypatch.setenv("LOGIN_PROXY_COUNT", "0")
    with pytest.raises(ImproperlyConfigured, match="LOGIN_PROXY_COUNT"):
        runpy.run_path(str(REPO / "backoffice" / "settings.py"))
