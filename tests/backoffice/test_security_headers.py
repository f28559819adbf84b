"""Every kind of response carries the strict Content-Security-Policy and the
Permissions-Policy, whatever DEBUG says; only Django's technical error page
goes without the CSP."""

import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.test import Client

from connectors.discord.connector import avatar_url
from connectors.exceptions import RateLimited
from connectors.registry import registry
from tests.helpers import assert_strict_policies, config_admin_url, connect

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"


@pytest.fixture
def broken_accounts_page(monkeypatch):
    """The accounts page raises, as a bug or a lost database would."""

    def broken(*args, **kwargs):
        raise RuntimeError("forced failure")

    monkeypatch.setattr("connectors.views.pause_notices", broken)


def test_the_login_page(client, db):
    response = client.get("/accounts/login/")
    assert response.status_code == 200
    assert_strict_policies(response)


def test_the_accounts_page_allows_avatars_from_discords_cdn_only(client_alice, standin):
    response = client_alice.get("/accounts/")
    assert response.status_code == 200
    csp = assert_strict_policies(response)
    assert csp["img-src"] == ["'self'", django_settings.CONNECTORS["discord"]["CDN_URL"]]
    avatar = avatar_url({"id": "80351110224678912", "avatar": "8342729096ea3675442027381ff50dfe"})
    assert avatar.startswith(django_settings.CONNECTORS["discord"]["CDN_URL"] + "/")


def test_forms_may_lead_to_the_consent_page_and_nowhere_else(client_alice, standin):
    """Logging in on the way to Connect posts a form that ends at the consent page."""
    response = client_alice.get("/auth/discord/connect")
    assert response.status_code == 302
    consent = urlsplit(standin.authorize_url)
    assert urlsplit(response["Location"]).netloc == consent.netloc
    csp = assert_strict_policies(response)
    # Each connector's consent page, and nothing else.
    origins = {f"{url.scheme}://{url.netloc}" for url in (urlsplit(c.authorize_url) for c in registry)}
    assert f"{consent.scheme}://{consent.netloc}" in origins and len(origins) == len(list(registry))
    assert csp["form-action"] == ["'self'", *sorted(origins)]


def test_the_flow_result_page(client_alice, standin):
    response = client_alice.get("/auth/discord/callback", {"state": "unknown", "code": "x"})
    assert response.status_code == 400
    assert_strict_policies(response)


def test_the_not_configured_page(client_alice, db):
    response = client_alice.get("/auth/discord/connect")
    assert response.status_code == 503
    assert "is not set up yet" in response.content.decode()
    assert_strict_policies(response)


def test_the_busy_page(client_alice, standin, monkeypatch):
    def rate_limited(*args, **kwargs):
        raise RateLimited("held back", retry_after=7)

    monkeypatch.setattr("connectors.views.flow_finish", rate_limited)
    response = client_alice.get("/auth/discord/callback", {"state": "s", "code": "c"})
    assert response.status_code == 503
    assert response["Retry-After"] == "7"
    assert_strict_policies(response)


def test_the_404_page(client, db):
    response = client.get("/no/such/page")
    assert response.status_code == 404
    assert "Page not found" in response.content.decode()
    assert_strict_policies(response)


def test_the_405_response(client_alice):
    response = client_alice.get("/accounts/1/disconnect")
    assert response.status_code == 405
    assert_strict_policies(response)


def test_the_403_page(admin_client, all_configured):
    response = admin_client.get("/admin/connectors/connectorconfig/add/")
    assert response.status_code == 403
    assert "Not allowed" in response.content.decode()
    assert_strict_policies(response)


def test_the_csrf_failure_page(db):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(get_user_model().objects.create_user("fay", password="pw-fay-123"))
    response = browser.post("/accounts/logout/")
    assert response.status_code == 403
    assert "This form has expired" in response.content.decode()
    assert_strict_policies(response)


def test_the_500_page(client_alice, broken_accounts_page):
    client_alice.raise_request_exception = False
    response = client_alice.get("/accounts/")
    assert response.status_code == 500
    assert "Something went wrong" in response.content.decode()
    assert_strict_policies(response)


@pytest.mark.parametrize("page", ["/admin/", "/admin/login/", "change", "/admin/connectors/connectedaccount/"])
def test_the_admin_pages(admin_client, standin, page):
    response = admin_client.get(config_admin_url(page) if page == "change" else page)
    assert response.status_code in (200, 302)
    assert_strict_policies(response)


def test_the_test_credentials_page(admin_client, standin):
    response = admin_client.post(config_admin_url("test_credentials"))
    assert response.status_code == 200
    assert_strict_policies(response)


def test_static_files(client, db):
    response = client.get("/static/connectors/site.css")
    assert response.status_code == 200
    assert_strict_policies(response)


def test_the_policy_is_enforced_with_debug_on(client_alice, standin, settings):
    settings.DEBUG = True
    assert_strict_policies(connect(client_alice, standin))
    assert_strict_policies(client_alice.get("/accounts/"))
    assert_strict_policies(client_alice.get("/auth/discord/callback", {"state": "unknown", "code": "x"}))


def test_only_djangos_technical_error_pages_go_without_the_csp(client_alice, settings, broken_accounts_page):
    """With DEBUG on Django shows its traceback and its own "page not found",
    full of inline style and script; django-csp leaves them without a policy."""
    settings.DEBUG = True
    client_alice.raise_request_exception = False
    for response in (client_alice.get("/accounts/"), client_alice.get("/no/such/page")):
        assert "because you have <code>DEBUG = True</code>" in response.content.decode()
        assert "Content-Security-Policy" not in response.headers
        assert "Content-Security-Policy-Report-Only" not in response.headers
        assert "camera=()" in response.headers["Permissions-Policy"]


def test_no_template_of_ours_has_inline_style_or_script():
    inline = re.compile(r"<style|\sstyle=|<script(?![^>]*\ssrc=)|\son[a-z]+=|javascript:", re.I)
    found = {
        str(path.relative_to(TEMPLATES)): inline.findall(path.read_text())
        for path in TEMPLATES.rglob("*.html")
    }
    assert not {name: hits for name, hits in found.items() if hits}


def test_the_policy_names_no_unsafe_source_anywhere():
    directives = django_settings.CONTENT_SECURITY_POLICY["DIRECTIVES"]
    assert not [source for sources in directives.values() for source in sources if "unsafe" in source]
