"""The connector configuration in the Django admin: what an operator sees and
changes, what the pages never show, and who gets in."""

import pytest
import responses
from cryptography.fernet import Fernet
from django.contrib.admin.models import LogEntry
from django.urls import reverse
from django.views.debug import SafeExceptionReporterFilter

from connectors.config import config_keys_set, config_update, config_values
from connectors.models import ConnectorConfig, ConnectorValue
from tests.conftest import BOT_TOKEN, CLIENT_ID, CLIENT_SECRET, SERVICE_ID
from tests.helpers import (
    ADD,
    assert_no_secret,
    config_admin_url,
    form_data,
    grant,
    raw_values,
    secret_windows,
)

CHANGELIST = "/admin/connectors/connectorconfig/"
REDIRECT_URL = "https://backoffice.example.com/auth/discord/callback"
OTHER_CLIENT_ID = "876543210987654321"

def save(client, **changes):
    page = client.get(config_admin_url("change"))
    return client.post(config_admin_url("change"), form_data(page, **changes))


def stored():
    values = config_values(SERVICE_ID)
    return {key: values[key] for key in ("clientId", "clientSecret", "botToken") if key in values}


def updated_at():
    """When the configuration and each value last changed, read without decrypting."""
    config = ConnectorConfig.objects.get(service_id=SERVICE_ID)
    values = ConnectorValue.objects.filter(config=config).only("key", "updated_at")
    return config.updated_at, {value.key: value.updated_at for value in values}


def history():
    config = ConnectorConfig.objects.get(service_id=SERVICE_ID)
    entries = LogEntry.objects.filter(object_id=str(config.pk)).order_by("pk")
    return [entry.get_change_message() for entry in entries]


@pytest.fixture
def staff(db, django_user_model, client):
    """A staff user with no permission on connector configurations, logged in."""
    user = django_user_model.objects.create_user("staff", password="pw", is_staff=True)
    client.force_login(user)
    return user


def test_the_secret_check_still_looks_at_most_of_each_secret():
    assert len(secret_windows(CLIENT_SECRET)) >= 20
    assert len(secret_windows(BOT_TOKEN)) >= 50


# The list


def test_the_list_shows_each_service_which_keys_are_set_and_when_it_changed(admin_client, db):
    config_update(service_id=SERVICE_ID, values={"clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET})

    page = admin_client.get(CHANGELIST)

    html = page.content.decode()
    assert page.status_code == 200
    assert SERVICE_ID in html
    assert "✓ clientId" in html and "✓ clientSecret" in html
    assert "✗ botToken" in html
    # A key with a default counts as set: the default applies.
    assert "✓ scopes (default)" in html and "✓ permissions (default)" in html
    # An optional key is not shown missing; once set, it is listed.
    assert "publicKey" not in html
    config_update(service_id=SERVICE_ID, values={"publicKey": "ab" * 32})
    assert "✓ publicKey" in admin_client.get(CHANGELIST).content.decode()
    assert "Last changed" in html
    # Readable, to the minute, no microseconds.
    changed = ConnectorConfig.objects.get(service_id=SERVICE_ID).updated_at
    assert f"{changed:%Y-%m-%d %H:%M} UTC" in html and f"{changed:%S.%f}" not in html
    # The list loads the stylesheet that keeps each mark beside its key.
    assert "connectors/admin.css" in html
    assert 'id="searchbar"' not in html
    assert_no_secret(html)


def test_the_list_reads_no_value(admin_client, wrong_key):
    page = admin_client.get(CHANGELIST)

    assert page.status_code == 200
    assert "✓ clientSecret" in page.content.decode()


# Adding and changing


def test_values_saved_through_the_admin_round_trip(admin_client, db):
    page = admin_client.get(ADD)
    assert page.status_code == 200
    assert 'name="service_id"' in page.content.decode()

    done = admin_client.post(
        ADD,
        form_data(page, clientId=CLIENT_ID, clientSecret=CLIENT_SECRET, botToken=BOT_TOKEN),
    )

    assert done.status_code == 302
    assert stored() == {"clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET, "botToken": BOT_TOKEN}
    assert history() == ["Added. Changed clientId, clientSecret and botToken."]


def test_there_is_nothing_to_add_once_every_connector_is_configured(admin_client, all_configured):
    assert admin_client.get(ADD).status_code == 403
    assert ADD not in admin_client.get(CHANGELIST).content.decode()


def test_the_change_page_says_a_secret_is_set_but_never_renders_it(admin_client, configured):
    page = admin_client.get(config_admin_url("change"))

    html = page.content.decode()
    assert page.status_code == 200
    assert f'name="clientId" value="{CLIENT_ID}"' in html
    assert '<input type="password" name="clientSecret" autocomplete="new-password"' in html
    assert "Set — ends in ••••89AB." in html
    assert "Set — ends in ••••wxyz." in html
    assert "Clear client secret" in html and "Clear bot token" in html
    assert_no_secret(html)


def test_secrets_saved_through_the_admin_are_not_shown_on_any_page_after(admin_client, db):
    config_update(service_id=SERVICE_ID, values={"clientId": CLIENT_ID})

    done = save(admin_client, clientSecret=CLIENT_SECRET, botToken=BOT_TOKEN)

    assert done.status_code == 302
    assert stored() == {"clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET, "botToken": BOT_TOKEN}
    for url in (CHANGELIST, config_admin_url("change"), config_admin_url("history")):
        page = admin_client.get(url)
        assert page.status_code == 200
        assert_no_secret(page)


def test_a_secret_left_empty_keeps_its_stored_value(admin_client, configured):
    done = save(admin_client, clientId=OTHER_CLIENT_ID)

    assert done.status_code == 302
    assert stored() == {"clientId": OTHER_CLIENT_ID, "clientSecret": CLIENT_SECRET, "botToken": BOT_TOKEN}
    assert history() == ["Changed clientId."]


def test_the_clear_box_removes_a_secret(admin_client, configured):
    done = save(admin_client, clear_botToken="on")

    assert done.status_code == 302
    assert "botToken" not in config_keys_set(SERVICE_ID)
    assert stored()["clientSecret"] == CLIENT_SECRET
    page = admin_client.get(config_admin_url("change"))
    assert "Not set." in page.content.decode()
    assert 'name="clear_botToken"' not in page.content.decode()
    assert history() == ["Changed botToken."]


def test_typing_a_secret_and_ticking_clear_is_refused(admin_client, configured):
    before = updated_at()

    page = save(admin_client, botToken="another-token", clear_botToken="on")

    assert page.status_code == 200
    assert "Either type a new value or clear it, not both." in page.content.decode()
    assert stored()["botToken"] == BOT_TOKEN
    assert updated_at() == before


def test_emptying_a_clear_value_removes_it(admin_client, configured):
    save(admin_client, clientId="")

    assert "clientId" not in config_keys_set(SERVICE_ID)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"clientId": "12345"}, "Client ID: must be a Discord application ID: 17 to 20 digits"),
        ({"botToken": "abc.def ghi"}, "Bot token: must not contain spaces or line breaks"),
        ({"clientSecret": "a b"}, "Client secret: must not contain spaces or line breaks"),
        # All or nothing: a good value beside a bad one is not saved either.
        ({"clientId": OTHER_CLIENT_ID, "botToken": "abc def"}, "Bot token: must not contain spaces"),
    ],
)
def test_invalid_input_is_refused_with_its_message_and_changes_nothing(
    admin_client, configured, changes, message
):
    before = updated_at()

    page = save(admin_client, **changes)

    assert page.status_code == 200
    html = page.content.decode()
    assert "Please correct the error below." in html
    assert message in html
    assert stored() == configured
    assert updated_at() == before
    assert history() == []
    assert_no_secret(html)


def test_a_secret_typed_beside_an_invalid_value_is_not_echoed_back(admin_client, db):
    config_update(service_id=SERVICE_ID, values={"clientId": CLIENT_ID})

    page = save(admin_client, clientId="not-a-snowflake", clientSecret=CLIENT_SECRET, botToken=BOT_TOKEN)

    assert "Client ID: must be a Discord application ID" in page.content.decode()
    assert_no_secret(page)
    assert "clientSecret" not in config_keys_set(SERVICE_ID)


def test_a_bot_token_pasted_with_its_prefix_is_stored_without_it(admin_client, configured):
    config_update(service_id=SERVICE_ID, clear=["botToken"])

    done = save(admin_client, botToken=f"  Bot {BOT_TOKEN}  ")

    assert done.status_code == 302
    assert stored()["botToken"] == BOT_TOKEN


def test_bot_permissions_are_ticked_as_check_boxes(admin_client, configured):
    done = save(admin_client, permissions=[str(1 << 11), str(1 << 10)])

    assert done.status_code == 302
    assert config_values(SERVICE_ID)["permissions"] == str((1 << 11) | (1 << 10))
    assert history() == ["Changed permissions."]


def test_the_history_names_the_keys_that_changed_never_their_values(admin_client, db):
    config_update(service_id=SERVICE_ID, values={"clientId": CLIENT_ID})

    save(admin_client, clientSecret=CLIENT_SECRET, botToken=BOT_TOKEN)

    assert history() == ["Changed clientSecret and botToken."]
    raw = "".join(LogEntry.objects.values_list("change_message", flat=True))
    assert_no_secret(raw)
    page = admin_client.get(config_admin_url("history"))
    assert "Changed clientSecret and botToken." in page.content.decode()
    assert_no_secret(page)


def test_typing_the_stored_secret_again_changes_nothing(admin_client, configured):
    before = updated_at()

    save(admin_client, clientSecret=CLIENT_SECRET)

    assert history() == ["No fields changed."]
    assert updated_at() == before


def test_posted_secrets_are_kept_out_of_error_reports(admin_client, configured):
    page = save(admin_client, clientSecret="bad secret", botToken=BOT_TOKEN)

    reported = SafeExceptionReporterFilter().get_post_parameters(page.wsgi_request)
    assert page.wsgi_request.sensitive_post_parameters == "__ALL__"
    assert BOT_TOKEN not in reported.values()
    assert "bad secret" not in reported.values()


# The Developer Portal


def test_the_redirect_url_is_shown_ready_to_copy_beside_the_checklist(admin_client, configured):
    html = admin_client.get(config_admin_url("change")).content.decode()

    assert f'value="{REDIRECT_URL}" readonly' in html
    assert "Bot → Requires OAuth2 Code Grant: on." in html
    assert "Installation → Guild Install scopes: applications.commands and bot." in html


def test_the_add_page_shows_the_redirect_url_too(admin_client, db):
    assert f'value="{REDIRECT_URL}" readonly' in admin_client.get(ADD).content.decode()


def test_the_change_page_has_a_test_credentials_button_outside_the_form(admin_client, configured):
    html = admin_client.get(config_admin_url("change")).content.decode()

    form_end = html.index("</form>", html.index('id="connectorconfig_form"'))
    button = html.index(f'action="{config_admin_url("test_credentials")}"')
    assert button > form_end
    assert 'value="Test credentials"' in html


# Who gets in


def test_staff_without_permission_are_refused(client, staff, configured):
    assert client.get(CHANGELIST).status_code == 403
    assert client.get(config_admin_url("change")).status_code == 403
    assert client.post(config_admin_url("change"), {"clientId": OTHER_CLIENT_ID}).status_code == 403
    assert client.get(ADD).status_code == 403
    assert stored() == configured


def test_staff_who_may_only_view_see_masked_values_and_cannot_save(client, staff, configured):
    grant(staff, "view_connectorconfig")

    page = client.get(config_admin_url("change"))

    html = page.content.decode()
    assert page.status_code == 200
    assert "Set — ••••89AB" in html
    assert CLIENT_ID in html
    assert 'type="password"' not in html
    assert "Test credentials" not in html
    assert "Clear client secret" not in html
    assert_no_secret(html)
    assert client.post(config_admin_url("change"), {"clientId": OTHER_CLIENT_ID}).status_code == 403
    assert stored() == configured


def test_staff_with_the_change_permission_can_save(client, staff, configured):
    grant(staff, "view_connectorconfig", "change_connectorconfig")

    done = save(client, clientId=OTHER_CLIENT_ID)

    assert done.status_code == 302
    assert stored()["clientId"] == OTHER_CLIENT_ID


def test_people_who_are_not_staff_are_sent_to_the_login(client, django_user_model, configured):
    client.force_login(django_user_model.objects.create_user("ada"))

    for url in (CHANGELIST, config_admin_url("change"), ADD):
        page = client.get(url)
        assert page.status_code == 302
        assert page["Location"].startswith("/admin/login/?next=")
    assert client.post(config_admin_url("change"), {"clientId": OTHER_CLIENT_ID}).status_code == 302
    assert stored() == configured


# A wrong key


def test_a_wrong_key_shows_an_error_instead_of_a_form(admin_client, wrong_key):
    page = admin_client.get(config_admin_url("change"))

    html = page.content.decode()
    assert page.status_code == 409
    assert "do not decrypt under any key in <code>FIELD_ENCRYPTION_KEY</code>" in html
    assert "Put the key they were written with back" in html
    assert "connectorconfig_form" not in html
    assert "<input" not in html.split('id="content-main"')[1]


def test_posting_under_a_wrong_key_changes_nothing_stored(admin_client, wrong_key):
    before_raw, before = raw_values(), updated_at()

    page = admin_client.post(
        config_admin_url("change"), {"clientId": OTHER_CLIENT_ID, "clientSecret": "new-secret", "clear_botToken": "on"}
    )

    assert page.status_code == 409
    assert raw_values() == before_raw
    assert updated_at() == before
    assert LogEntry.objects.count() == 0


def test_deleting_under_a_wrong_key_is_refused(admin_client, wrong_key):
    before_raw = raw_values()

    config = ConnectorConfig.objects.get(service_id=SERVICE_ID)
    delete_url = reverse("admin:connectors_connectorconfig_delete", args=[config.pk])
    page = admin_client.post(delete_url, {"post": "yes"})

    assert page.status_code == 409
    assert raw_values() == before_raw


def test_deleting_several_under_a_wrong_key_is_refused(admin_client, wrong_key):
    before_raw = raw_values()
    config = ConnectorConfig.objects.get(service_id=SERVICE_ID)

    page = admin_client.post(
        CHANGELIST, {"action": "delete_selected", "_selected_action": [config.pk], "post": "yes"}
    )

    assert page.status_code == 409
    assert raw_values() == before_raw


def test_the_values_read_again_once_the_key_is_back(admin_client, settings, configured):
    key = settings.FIELD_ENCRYPTION_KEY
    settings.FIELD_ENCRYPTION_KEY = [Fernet.generate_key().decode()]
    assert admin_client.get(config_admin_url("change")).status_code == 409

    settings.FIELD_ENCRYPTION_KEY = key

    assert admin_client.get(config_admin_url("change")).status_code == 200
    assert stored() == configured


def test_test_credentials_under_a_wrong_key_shows_the_error_and_asks_nobody(admin_client, wrong_key):
    with responses.RequestsMock() as discord:
        page = admin_client.post(config_admin_url("test_credentials"))

    assert page.status_code == 409
    assert "FIELD_ENCRYPTION_KEY" in page.content.decode()
    assert len(discord.calls) == 0


def test_deleting_with_the_right_key_removes_the_configuration_and_its_values(admin_client, configured):
    config = ConnectorConfig.objects.get(service_id=SERVICE_ID)
    delete_url = reverse("admin:connectors_connectorconfig_delete", args=[config.pk])
    confirmation = admin_client.get(delete_url)
    assert confirmation.status_code == 200
    assert_no_secret(confirmation)

    admin_client.post(delete_url, {"post": "yes"})

    assert not ConnectorConfig.objects.exists()
    assert not ConnectorValue.objects.exists()


# A connector that is no longer installed


def test_a_configuration_of_an_unregistered_connector_is_explained(admin_client, db):
    config = ConnectorConfig.objects.create(service_id="appmixer:gone")

    page = admin_client.get(reverse("admin:connectors_connectorconfig_change", args=[config.pk]))

    assert page.status_code == 409
    assert "No connector is registered under" in page.content.decode()
    assert "Not registered" in admin_client.get(CHANGELIST).content.decode()
