"""A connector's stored configuration: encrypted at rest, cleaned before it is
saved, all or nothing, and never silently wrong when the key is."""

from io import StringIO

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.db import connection
from django.utils import timezone
from encrypted_model_fields import fields as upstream

from connectors.config import config_keys_set, config_update, config_values
from connectors import crypto
from connectors.crypto import encryption_key_rotate
from connectors.exceptions import EncryptionKeyError, InvalidConfiguration
from connectors.models import ConnectedAccount, ConnectorConfig, ConnectorValue
from tests.conftest import BOT_TOKEN, CLIENT_ID, CLIENT_SECRET, SERVICE_ID

KEY_A, KEY_B, KEY_WRONG = (Fernet.generate_key().decode() for _ in range(3))

# A secret made of no words, so that a 5-character window of it found in an
# error message is a leak, not a coincidence with the message's own text.
OPAQUE_SECRET = "Xk9mQ2vL7pR4tW8zN3bH6jF1cD5gS0aY"


def windows(text, size=5):
    return {text[i : i + size] for i in range(len(text) - size + 1)}


def raw_rows(model, *columns):
    """The columns as the database holds them, read with SQL and not through the field."""
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {', '.join(quote(c) for c in columns)} FROM {quote(model._meta.db_table)}"
        )
        return cursor.fetchall()


def raw_values():
    return dict(raw_rows(ConnectorValue, "key", "value"))


def raw_tokens():
    return raw_rows(ConnectedAccount, "access_token", "refresh_token")


def stored(service_id=SERVICE_ID):
    """The values of the keys this module sets (other keys may have defaults)."""
    values = config_values(service_id)
    return {key: values[key] for key in ("clientId", "clientSecret", "botToken") if key in values}


@pytest.fixture
def key_a(settings):
    settings.FIELD_ENCRYPTION_KEY = [KEY_A]


@pytest.fixture
def account(django_user_model):
    user = django_user_model.objects.create_user("ada")
    return ConnectedAccount.objects.create(
        user=user,
        service_id=SERVICE_ID,
        uid="80351110224678912",
        access_token="Qm7Tn2Vx8Lp4Rz1Ks6Hw3Jd9",
        refresh_token="Yc5Gb0Nf7Mq2Wt8Ax4Ve1Su6",
    )


# Storage


def test_values_round_trip(configured):
    assert stored() == configured


def test_raw_column_holds_fernet_tokens_not_plaintext(settings, configured):
    raw = raw_values()
    crypter = Fernet(settings.FIELD_ENCRYPTION_KEY[0])
    for key, plaintext in configured.items():
        for column in raw.values():
            assert not windows(plaintext) & windows(column), f"part of {key} is in the column"
        assert crypter.decrypt(raw[key].encode()).decode() == plaintext


def test_keys_set_are_known_without_decrypting(configured, settings):
    settings.FIELD_ENCRYPTION_KEY = [KEY_WRONG]
    assert config_keys_set(SERVICE_ID) == set(configured)


@pytest.fixture
def decrypted(monkeypatch):
    """How many values have been decrypted since the test began."""
    counted, original = [], upstream.decrypt_str
    monkeypatch.setattr(upstream, "decrypt_str", lambda *a, **k: counted.append(1) or original(*a, **k))
    return lambda: len(counted)


def test_a_process_decrypts_the_values_once_until_they_change(configured, decrypted):
    stored()
    once = decrypted()
    assert once == len(configured)

    assert stored() == configured
    assert decrypted() == once
    config_update(service_id=SERVICE_ID, values={"clientSecret": OPAQUE_SECRET})
    before = decrypted()
    assert stored()["clientSecret"] == OPAQUE_SECRET
    assert decrypted() - before == once


def test_a_change_written_by_another_process_is_read_at_once(configured):
    """What another process's config_update leaves in the tables: a new value, and the configuration's new time."""
    stored()
    quote = connection.ops.quote_name
    now = ConnectorConfig._meta.get_field("updated_at").get_db_prep_value(timezone.now(), connection)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {quote(ConnectorValue._meta.db_table)} SET {quote('value')} = %s WHERE {quote('key')} = %s",
            [upstream.encrypt_str(OPAQUE_SECRET).decode(), "clientSecret"],
        )
        cursor.execute(f"UPDATE {quote(ConnectorConfig._meta.db_table)} SET {quote('updated_at')} = %s", [now])
    assert stored()["clientSecret"] == OPAQUE_SECRET
    ConnectorConfig.objects.all().delete()
    assert stored() == {}


def test_update_reports_only_the_keys_that_changed(configured):
    assert config_update(service_id=SERVICE_ID, values=configured) == []
    assert config_update(service_id=SERVICE_ID, values={"clientSecret": OPAQUE_SECRET}) == [
        "clientSecret"
    ]


def test_clear_removes_a_value(configured):
    assert config_update(service_id=SERVICE_ID, clear=["botToken"]) == ["botToken"]
    assert "botToken" not in config_values(SERVICE_ID)
    assert config_update(service_id=SERVICE_ID, clear=["botToken"]) == []


# Normalisation and refusals


def test_surrounding_white_space_is_removed(db):
    config_update(
        service_id=SERVICE_ID,
        values={
            "clientId": f"  {CLIENT_ID}\n",
            "clientSecret": f"\t{CLIENT_SECRET} ",
            "botToken": f"\n{BOT_TOKEN}\r\n",
        },
    )
    assert stored() == {"clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET, "botToken": BOT_TOKEN}


@pytest.mark.parametrize("pasted", [f"Bot {BOT_TOKEN}", f"bot {BOT_TOKEN}", f"  Bot  {BOT_TOKEN} "])
def test_bot_prefix_is_dropped(db, pasted):
    config_update(service_id=SERVICE_ID, values={"botToken": pasted})
    assert config_values(SERVICE_ID)["botToken"] == BOT_TOKEN


@pytest.mark.parametrize(
    "client_id",
    ["1234567890123456", "123456789012345678901", "12345678901234567a", "my-app", "1234 5678901234567"],
)
def test_client_id_must_be_17_to_20_digits(db, client_id):
    with pytest.raises(InvalidConfiguration) as refused:
        config_update(service_id=SERVICE_ID, values={"clientId": client_id})
    assert "17 to 20 digits" in refused.value.errors["clientId"]
    assert not ConnectorValue.objects.exists()


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("clientSecret", "two words"),
        ("clientSecret", "line\nbreak"),
        ("botToken", "Bot abc.def ghi"),
        ("clientSecret", "   "),
    ],
)
def test_secret_with_white_space_inside_or_nothing_at_all_is_refused(db, key, value):
    with pytest.raises(InvalidConfiguration) as refused:
        config_update(service_id=SERVICE_ID, values={key: value})
    assert set(refused.value.errors) == {key}
    assert not ConnectorConfig.objects.exists()
    assert not ConnectorValue.objects.exists()


def test_one_bad_value_keeps_the_good_ones_out_too(db):
    with pytest.raises(InvalidConfiguration) as refused:
        config_update(
            service_id=SERVICE_ID,
            values={"clientId": "12345", "clientSecret": CLIENT_SECRET, "botToken": BOT_TOKEN},
        )
    assert set(refused.value.errors) == {"clientId"}
    assert not ConnectorValue.objects.exists()


def test_a_refused_update_leaves_the_stored_configuration_as_it_was(configured):
    before = raw_values()
    with pytest.raises(InvalidConfiguration) as refused:
        config_update(
            service_id=SERVICE_ID,
            values={"clientSecret": OPAQUE_SECRET, "botToken": "has a space"},
            clear=["clientId"],
        )
    assert set(refused.value.errors) == {"botToken"}
    assert raw_values() == before
    assert stored() == configured


def test_unknown_keys_are_refused_by_name(configured):
    with pytest.raises(InvalidConfiguration) as refused:
        config_update(service_id=SERVICE_ID, values={"clientID": CLIENT_ID})
    assert "unknown key" in refused.value.errors["clientID"]
    with pytest.raises(InvalidConfiguration) as refused:
        config_update(service_id=SERVICE_ID, clear=["token"])
    assert set(refused.value.errors) == {"token"}
    assert stored() == configured


# System check


def test_check_passes_with_the_right_key(configured):
    call_command("check", stdout=StringIO(), stderr=StringIO())


def test_check_reports_values_that_do_not_decrypt(configured, settings):
    settings.FIELD_ENCRYPTION_KEY = [KEY_WRONG]
    with pytest.raises(SystemCheckError) as failed:
        call_command("check", stdout=StringIO(), stderr=StringIO())
    assert "connectors.E001" in str(failed.value)
    assert "FIELD_ENCRYPTION_KEY" in str(failed.value)


# Rotation


def test_rotation_moves_every_value_to_the_first_key(
    key_a, settings, db, discord_values, account, monkeypatch
):
    monkeypatch.setattr(crypto, "ROTATE_BATCH", 2)
    config_update(service_id=SERVICE_ID, values=discord_values)
    settings.FIELD_ENCRYPTION_KEY = [KEY_B, KEY_A]

    assert encryption_key_rotate() == len(discord_values) + 2

    only_b = Fernet(KEY_B)
    for column in list(raw_values().values()) + [t for row in raw_tokens() for t in row]:
        only_b.decrypt(column.encode())
    settings.FIELD_ENCRYPTION_KEY = [KEY_B]
    assert stored() == discord_values
    account.refresh_from_db()
    assert account.refresh_token == "Yc5Gb0Nf7Mq2Wt8Ax4Ve1Su6"
    settings.FIELD_ENCRYPTION_KEY = [KEY_A]
    with pytest.raises(EncryptionKeyError):
        config_values(SERVICE_ID)


def test_rotation_stops_before_rewriting_anything_when_a_value_does_not_decrypt(
    key_a, settings, db, discord_values, django_user_model
):
    config_update(service_id=SERVICE_ID, values=discord_values)
    settings.FIELD_ENCRYPTION_KEY = [KEY_WRONG]
    ConnectedAccount.objects.create(
        user=django_user_model.objects.create_user("bob"),
        service_id=SERVICE_ID,
        uid="80351110224678913",
        access_token="written-under-another-key",
    )
    before = raw_values(), raw_tokens()
    settings.FIELD_ENCRYPTION_KEY = [KEY_B, KEY_A]

    with pytest.raises(EncryptionKeyError):
        encryption_key_rotate()

    assert (raw_values(), raw_tokens()) == before


# A wrong key


def test_a_value_that_does_not_decrypt_is_an_error_naming_the_setting_only(key_a, settings, db):
    config_update(service_id=SERVICE_ID, values={"clientSecret": OPAQUE_SECRET})
    ciphertext = raw_values()["clientSecret"]
    settings.FIELD_ENCRYPTION_KEY = [KEY_WRONG]

    with pytest.raises(EncryptionKeyError) as failed:
        config_values(SERVICE_ID)

    message = str(failed.value)
    assert "FIELD_ENCRYPTION_KEY" in message
    assert not windows(OPAQUE_SECRET) & windows(message)
    assert not windows(ciphertext, 8) & windows(message, 8)


def test_no_key_at_all_for_a_value_is_not_ciphertext_handed_out(key_a, settings, db):
    config_update(service_id=SERVICE_ID, values={"clientSecret": OPAQUE_SECRET})
    settings.FIELD_ENCRYPTION_KEY = [KEY_B]
    with pytest.raises(EncryptionKeyError):
        ConnectorValue.objects.get(key="clientSecret")


@pytest.mark.parametrize(
    "change",
    [
        {"values": {"clientSecret": OPAQUE_SECRET}},
        {"values": {"clientId": "876543210987654321"}},
        {"clear": ["botToken"]},
    ],
)
def test_an_update_under_a_wrong_key_keeps_the_stored_values(key_a, settings, db, discord_values, change):
    config_update(service_id=SERVICE_ID, values=discord_values)
    before = raw_values()
    settings.FIELD_ENCRYPTION_KEY = [KEY_WRONG]

    with pytest.raises(EncryptionKeyError):
        config_update(service_id=SERVICE_ID, **change)

    assert raw_values() == before
    settings.FIELD_ENCRYPTION_KEY = [KEY_A]
    assert stored() == discord_values
