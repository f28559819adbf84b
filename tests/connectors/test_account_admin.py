"""Staff see and act on connected accounts without ever seeing a token."""

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from connectors.models import ConnectedAccount

from tests.helpers import account_admin_action as run_action, connect

from tests.helpers import ACCOUNT_ADMIN as URL


@pytest.fixture
def account(client, standin, db):
    user = get_user_model().objects.create_user("dora", password="pw-dora-123")
    client.force_login(user)
    connect(client, standin)
    return ConnectedAccount.objects.get()


@pytest.fixture
def staff(admin_user):
    browser = Client()
    browser.force_login(admin_user)
    return browser


def assert_no_tokens(html, account):
    for token in (account.access_token, account.refresh_token):
        assert token[:12] not in html and token[-12:] not in html


def test_list_search_filter_and_detail_show_no_token(staff, account):
    for url in (URL, f"{URL}?q=dora", f"{URL}?q={account.uid}", f"{URL}?status__exact=active"):
        html = staff.get(url).content.decode()
        assert account.username in html, url
        assert_no_tokens(html, account)
    assert "0 connected accounts" not in staff.get(f"{URL}?q=dora").content.decode()
    assert account.username not in staff.get(f"{URL}?q=nobody-here").content.decode()
    detail = staff.get(f"{URL}{account.pk}/change/").content.decode()
    assert account.uid in detail
    assert_no_tokens(detail, account)


def test_the_service_filter_offers_each_connector_and_filters_by_it(staff, account):
    html = staff.get(URL).content.decode()
    assert '?service_id=appmixer%3Adiscord"' in html and ">Discord</a>" in html
    assert account.username in staff.get(f"{URL}?service_id=appmixer:discord").content.decode()
    other = staff.get(f"{URL}?service_id=appmixer:other").content.decode()
    assert account.username not in other and "0 connected accounts" in other


def test_accounts_cannot_be_added_by_hand(staff, account):
    assert staff.get(f"{URL}add/").status_code == 403


def test_the_list_decrypts_no_token(staff, account, monkeypatch):
    from connectors import fields

    def refuse(*args):
        raise AssertionError("a token was decrypted to draw the list")

    monkeypatch.setattr(fields.upstream, "decrypt_str", refuse)
    assert staff.get(URL).status_code == 200


def test_refresh_now_rotates_the_tokens(staff, account, standin):
    html = run_action(staff, "refresh_now", account)
    assert "refreshed; expires" in html
    fresh = ConnectedAccount.objects.get()
    assert fresh.refresh_token != account.refresh_token
    assert standin.refresh_token_valid(fresh.refresh_token)
    assert_no_tokens(html, fresh)


def test_check_shows_scopes_and_expiry_as_discord_sees_them(staff, account, standin):
    html = run_action(staff, "check_grant", account)
    assert "scopes identify bot applications.commands" in html
    assert standin.count("oauth2_me") == 1


def test_check_of_a_revoked_grant_marks_needs_reconnect(staff, account, standin):
    import requests

    requests.post(
        f"{standin.api_base_url}/oauth2/token/revoke",
        data={"token": account.refresh_token},
        auth=(standin.app.client_id, standin.app.client_secret),
        timeout=5,
    )
    ConnectedAccount.objects.update(expires_at=None)
    run_action(staff, "refresh_now", account)
    assert ConnectedAccount.objects.get().status == ConnectedAccount.Status.NEEDS_RECONNECT
    html = staff.get(f"{URL}?status__exact=needs_reconnect").content.decode()
    assert account.username in html


def test_revoke_and_delete(staff, account, standin):
    html = run_action(staff, "revoke_and_delete", account)
    assert "revoked and deleted" in html
    assert not ConnectedAccount.objects.exists()
    assert not standin.refresh_token_valid(account.refresh_token)


def test_staff_without_permission_are_refused(account, db):
    clerk = get_user_model().objects.create_user("clerk", password="pw-clerk-123", is_staff=True)
    browser = Client()
    browser.force_login(clerk)
    assert browser.get(URL).status_code == 403


def act(staff, action, account):
    return staff.post(URL, {"action": action, "_selected_action": [account.pk]}, follow=True)


def test_every_action_is_on_the_accounts_history_with_who_and_what(staff, account, admin_user, standin):
    from django.contrib.admin.models import CHANGE, DELETION, LogEntry

    act(staff, "refresh_now", account)
    standin.fail_next("oauth2_me", status=401)
    act(staff, "check_grant", account)
    stored = ConnectedAccount.objects.get(pk=account.pk)
    act(staff, "revoke_and_delete", account)

    entries = list(LogEntry.objects.filter(object_id=str(account.pk)).order_by("pk"))
    assert [(e.action_flag, e.user_id) for e in entries] == [(CHANGE, admin_user.pk)] * 2 + [(DELETION, admin_user.pk)]
    assert entries[0].get_change_message() == "Refreshed the token now"
    assert entries[1].get_change_message().startswith("Checked the grant at the provider: failed (")
    assert entries[2].object_repr == str(stored)
    for entry in entries:
        assert_no_tokens(entry.change_message + entry.object_repr, stored)
    history = staff.get(f"{URL}{account.pk}/history/")
    assert history.status_code in (200, 302)


def test_the_list_fits_with_the_last_error_cut_short(staff, account):
    account.last_error = "Discord answered 503 Service Unavailable " + "while refreshing the token " * 5
    account.save()

    html = staff.get(URL).content.decode()

    assert 'class="column-uid' not in html and 'class="column-last_error' not in html
    assert f'title="{account.last_error}"' in html
    assert ">Discord answered 503 Service Un…<" in html
    # The account's name is the link to its page; the username and uid are under it.
    assert f'<a href="{URL}{account.pk}/change/">Stand-in User<br>' in html
    assert f"@{account.username}<br>{account.uid}" in html
    assert f"{account.expires_at:%Y-%m-%d %H:%M} UTC" in html


def test_the_accounts_page_names_the_bots_permissions_in_each_server(staff, account):
    from django.utils import timezone

    account.servers.all().delete()
    account.servers.create(
        server_id="81384788765712384", name="Guild", permissions=str(1 << 11 | 1 << 14), added_at=timezone.now()
    )

    html = staff.get(f"{URL}{account.pk}/change/").content.decode()

    assert "Send Messages, Embed Links" in html
    assert str(1 << 11 | 1 << 14) not in html
