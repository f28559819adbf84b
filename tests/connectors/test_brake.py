"""The brake on mass marking: a provider refusing every grant at once marks MARK_BRAKE accounts, holds the rest."""

import re
from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.core import mail
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone

from connectors.accounts import account_connect, accounts_removed_at_provider
from connectors.brake import Mark, marks_confirm, marks_dismiss
from connectors.exceptions import MarkHeld, NeedsReconnect
from connectors.models import ConnectedAccount, HeldMark
from connectors.registry import registry
from connectors.tokens import account_check, fresh_access_token
from tests.conftest import SERVICE_ID
from tests.helpers import (
    grant,
    postgres_only,
    refresh_tokens_run as sweep,
    revoke_at_standin,
    seed_account,
    seed_many,
    standin_tokens,
    sweeps_side_by_side,
)

ADMIN_LIST = "/admin/connectors/connectedaccount/"
MARKED = ConnectedAccount.Status.NEEDS_RECONNECT
ACTIVE = ConnectedAccount.Status.ACTIVE


@pytest.fixture
def alice_mail(alice):
    alice.email = "alice@example.com"
    alice.save()
    return alice


def refused(standin, user, count, *, expires_in=60):
    """``count`` accounts of ``user`` expiring soon, whose grants the person (or Discord) just ended."""
    seed_many(standin, user, count, expires_in=expires_in)
    accounts = list(ConnectedAccount.objects.filter(user=user).order_by("pk"))
    for account in accounts:
        revoke_at_standin(standin, account.refresh_token)
    return accounts





def statuses():
    return {
        "marked": ConnectedAccount.objects.filter(status=MARKED).count(),
        "active": ConnectedAccount.objects.filter(status=ACTIVE).count(),
        "held": HeldMark.objects.count(),
    }


def held_accounts():
    return list(ConnectedAccount.objects.filter(held_mark__isnull=False).order_by("pk"))


def test_thirty_grants_gone_at_once_mark_25_hold_5_and_confirm_marks_the_rest(
    transactional_db, standin, alice_mail, client, api
):
    refused(standin, alice_mail, 30)

    output, error = sweep()

    assert output.strip().endswith("refreshed 0, skipped 0, failed 0, needs reconnect 25, held back 5")
    assert error is not None and "5 account(s) held back from needs-reconnect" in error
    assert "`manage.py confirm_marks appmixer:discord`" in error
    assert "`manage.py confirm_marks appmixer:discord --dismiss`" in error
    assert statuses() == {"marked": 25, "active": 5, "held": 5}
    assert len(mail.outbox) == 25 and {m.to[0] for m in mail.outbox} == {"alice@example.com"}
    assert set(ConnectedAccount.objects.filter(status=MARKED).values_list("marked_by", flat=True)) == {"refresh"}
    held = held_accounts()
    assert len(held) == 5 and all(account.status == ACTIVE for account in held)
    for account in held:
        mark = account.held_mark
        assert (mark.service_id, mark.marked_by) == (SERVICE_ID, "refresh")
        assert mark.reason == registry.get(SERVICE_ID).reconnect_reason
        assert mark.error and account.last_error == mark.error
    refreshes = standin.count("token.refresh_token")

    # The next run skips the held accounts: nothing is asked of Discord, nothing fails.
    output, error = sweep()
    assert error is None and output.strip().endswith("refreshed 0, skipped 0, failed 0, needs reconnect 0")
    assert standin.count("token.refresh_token") == refreshes

    # Their person sees them being checked, with no Reconnect to press for them.
    client.force_login(alice_mail)
    page = client.get("/accounts/").content.decode()
    assert page.count(">Being checked</span>") == 5
    assert page.count("Reconnect</a>") == 25

    # A service asking for the token of a held account that needs a refresh: 503, and Discord is not asked.
    answer = api.post(f"/api/v1/accounts/{held[0].pk}/token")
    assert answer.status_code == 503 and answer["Retry-After"] == "600"
    assert answer.json()["code"] == "service_unavailable"
    assert "being checked" in answer.json()["message"]
    assert standin.count("token.refresh_token") == refreshes

    out = StringIO()
    call_command("confirm_marks", SERVICE_ID, stdout=out)

    assert "confirmed 5 held mark(s) of appmixer:discord" in out.getvalue()
    assert statuses() == {"marked": 30, "active": 0, "held": 0}
    assert len(mail.outbox) == 30
    for account in held:
        account.refresh_from_db()
        assert account.status_reason == registry.get(SERVICE_ID).reconnect_reason
        assert account.marked_by == "refresh"
    assert "No Discord account is held back" in call_command_output("confirm_marks", SERVICE_ID)


def call_command_output(*args):
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


@pytest.fixture
def two_held(transactional_db, standin, alice_mail, settings):
    """MARK_BRAKE 2: a sweep over four refused accounts marks two and holds two."""
    settings.MARK_BRAKE = 2
    refused(standin, alice_mail, 4)
    output, error = sweep()
    assert "held back 2" in output and "2 account(s) held back" in error
    assert statuses() == {"marked": 2, "active": 2, "held": 2} and len(mail.outbox) == 2
    return held_accounts()


def test_dismiss_leaves_the_accounts_active_and_a_later_refusal_holds_again(two_held, standin):
    assert "dismissed 2 held mark(s)" in call_command_output("confirm_marks", SERVICE_ID, "--dismiss")

    assert statuses() == {"marked": 2, "active": 2, "held": 0} and len(mail.outbox) == 2
    refreshes = standin.count("token.refresh_token")
    # No longer held, they are swept again: Discord still refuses them, the window is still full.
    output, error = sweep()
    assert "held back 2" in output and error
    assert standin.count("token.refresh_token") == refreshes + 2
    assert statuses() == {"marked": 2, "active": 2, "held": 2} and len(mail.outbox) == 2


def test_marks_older_than_the_window_no_longer_count(two_held):
    ConnectedAccount.objects.filter(status=MARKED).update(status_changed_at=timezone.now() - timedelta(minutes=11))
    ids = [account.pk for account in two_held]
    assert marks_dismiss(SERVICE_ID) == 2

    output, error = sweep()

    assert error is None and "needs reconnect 2" in output
    assert statuses() == {"marked": 4, "active": 0, "held": 0} and len(mail.outbox) == 4
    assert set(ConnectedAccount.objects.filter(pk__in=ids).values_list("status", flat=True)) == {MARKED}


def test_a_held_account_whose_token_is_still_valid_is_handed_out(two_held, api, standin):
    account = two_held[0]
    ConnectedAccount.objects.filter(pk=account.pk).update(expires_at=timezone.now() + timedelta(hours=1))

    answer = api.post(f"/api/v1/accounts/{account.pk}/token")

    assert answer.status_code == 200 and answer.json()["access_token"] == account.access_token


def test_a_held_account_is_not_refreshed_in_code_either(two_held, standin):
    refreshes = standin.count("token.refresh_token")

    with pytest.raises(MarkHeld) as held:
        fresh_access_token(two_held[0])

    assert held.value.retry_after == 600 and held.value.account_id == two_held[0].pk
    assert standin.count("token.refresh_token") == refreshes
    assert HeldMark.objects.filter(account=two_held[0]).exists()


def test_events_are_not_counted_and_never_held(transactional_db, standin, alice_mail, settings):
    settings.MARK_BRAKE = 1
    accounts = [seed_account(standin, alice_mail, expires_in=60) for _ in range(4)]
    connector = registry.get(SERVICE_ID)

    # Three people remove the app at Discord: all three marked, though MARK_BRAKE is 1.
    uids = [account.uid for account in accounts[:3]]
    assert accounts_removed_at_provider(connector=connector, uids=uids, reason="removed at Discord") == 3
    assert set(ConnectedAccount.objects.filter(uid__in=uids).values_list("marked_by", flat=True)) == {"event"}

    # They do not count: the first refused refresh is still marked, not held.
    revoke_at_standin(standin, accounts[3].refresh_token)
    with pytest.raises(NeedsReconnect):
        fresh_access_token(accounts[3])
    assert statuses() == {"marked": 4, "active": 0, "held": 0} and len(mail.outbox) == 4


def test_an_event_marks_even_past_the_brake_and_drops_the_held_mark(two_held, standin):
    connector = registry.get(SERVICE_ID)
    held = two_held[0]

    assert accounts_removed_at_provider(connector=connector, uids=[held.uid], reason="removed at Discord") == 1

    held.refresh_from_db()
    assert (held.status, held.marked_by) == (MARKED, "event")
    assert not HeldMark.objects.filter(account=held).exists()
    assert len(mail.outbox) == 3


def test_a_refused_grant_check_counts_and_may_be_held(transactional_db, standin, alice_mail, settings):
    settings.MARK_BRAKE = 0
    account = seed_account(standin, alice_mail, expires_in=3600)
    revoke_at_standin(standin, account.access_token)

    with pytest.raises(MarkHeld):
        account_check(account)

    account.refresh_from_db()
    assert account.status == ACTIVE and account.held_mark.marked_by == "check"
    assert mail.outbox == []
    settings.MARK_BRAKE = 1
    with pytest.raises(NeedsReconnect):
        account_check(account)
    account.refresh_from_db()
    assert (account.status, account.marked_by) == (MARKED, "check")
    assert not HeldMark.objects.exists() and len(mail.outbox) == 1


def test_needs_reconnect_tells_what_it_did():
    assert bool(Mark.MARKED) and not Mark.UNCHANGED and not Mark.HELD
    changed = 0
    for mark in (Mark.MARKED, Mark.UNCHANGED, Mark.HELD, Mark.MARKED):
        changed += mark
    assert changed == 2


def test_reconnecting_drops_the_held_mark(two_held, standin, django_capture_on_commit_callbacks):
    held = two_held[0]
    fresh = standin_tokens(standin, scope="identify")

    with django_capture_on_commit_callbacks(execute=True):
        account_connect(user=held.user, connector=registry.get(SERVICE_ID), token=fresh,
                        profile={"uid": held.uid, "username": held.username})

    assert not HeldMark.objects.filter(account=held).exists()
    assert HeldMark.objects.filter(account=two_held[1]).exists()
    held.refresh_from_db()
    assert held.status == ACTIVE and held.access_token == fresh["access_token"]


def test_the_admin_shows_the_held_marks_and_confirms_them(two_held, admin_client, admin_user):
    page = admin_client.get(ADMIN_LIST).content.decode()

    assert "2 accounts held back from needs-reconnect (Discord, since" in page
    confirm = f"{ADMIN_LIST}held-marks/{SERVICE_ID}/confirm/"
    dismiss = f"{ADMIN_LIST}held-marks/{SERVICE_ID}/dismiss/"
    form = rf'<form method="post" action="{confirm}"[^>]*><input type="hidden" name="csrfmiddlewaretoken"'
    assert re.search(form, page)
    assert f'action="{dismiss}"' in page and 'value="Confirm"' in page and 'value="Dismiss"' in page
    assert admin_client.get(confirm).status_code == 405

    answer = admin_client.post(confirm, follow=True)

    assert "Discord: 2 account(s) marked needs reconnect" in answer.content.decode()
    assert statuses() == {"marked": 4, "active": 0, "held": 0} and len(mail.outbox) == 4
    assert "held back from needs-reconnect" not in admin_client.get(ADMIN_LIST).content.decode()
    entries = LogEntry.objects.filter(change_message="Confirmed the held needs-reconnect mark")
    assert sorted(int(entry.object_id) for entry in entries) == [account.pk for account in two_held]
    assert {entry.user_id for entry in entries} == {admin_user.pk}


def test_the_admin_dismiss_button_drops_them(two_held, admin_client):
    answer = admin_client.post(f"{ADMIN_LIST}held-marks/{SERVICE_ID}/dismiss/", follow=True)

    assert "Discord: dismissed 2 held mark(s)" in answer.content.decode()
    assert statuses() == {"marked": 2, "active": 2, "held": 0}
    assert LogEntry.objects.filter(change_message="Dismissed the held needs-reconnect mark").count() == 2


def test_staff_who_may_only_view_accounts_see_the_count_but_no_buttons(two_held):
    viewer = get_user_model().objects.create_user("viewer", password="pw-viewer-123", is_staff=True)
    grant(viewer, "view_connectedaccount")
    browser = Client()
    browser.force_login(viewer)

    page = browser.get(ADMIN_LIST).content.decode()

    assert "2 accounts held back from needs-reconnect" in page and 'value="Confirm"' not in page
    assert browser.post(f"{ADMIN_LIST}held-marks/{SERVICE_ID}/confirm/").status_code == 403
    assert statuses()["held"] == 2


def test_confirm_marks_refuses_an_unknown_service(db):
    with pytest.raises(CommandError, match="appmixer:nothing"):
        call_command("confirm_marks", "appmixer:nothing")


def test_confirm_skips_an_account_marked_meanwhile(two_held):
    ConnectedAccount.objects.filter(pk=two_held[0].pk).update(status=MARKED, marked_by="event")

    assert marks_confirm(SERVICE_ID) == 1

    assert not HeldMark.objects.exists() and len(mail.outbox) == 3


@postgres_only
def test_two_sweeps_at_once_keep_one_count(transactional_db, standin, alice_mail):
    refused(standin, alice_mail, 30)

    runs = sweeps_side_by_side(standin, "--within", "1d", "--workers", "4")

    assert statuses() == {"marked": 25, "active": 5, "held": 5}, [err[-2000:] for _, _, err in runs]
    # The children mail through the console backend: 25 mails in all.
    assert sum(out.count("Subject: Reconnect your Discord account") for _, out, _ in runs) == 25
    assert any(returncode != 0 and "held back from needs-reconnect" in err for returncode, _, err in runs)
    # Each grant was refused once: a run that found an account marked or held by the other asked nothing.
    assert standin.count("token.refresh_token") == 30
