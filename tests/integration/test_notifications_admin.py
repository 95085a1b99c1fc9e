"""Secrets at rest and in the admin, config validation, and the outbox's admin actions."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ValidationError
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from notifications import crypto
from notifications.models import NotificationDelivery, NotificationLog, NotificationProvider
from services import db

pytestmark = pytest.mark.django_db

TOKEN = "xoxb-plain-secret-9876"
NEW_TOKEN = "xoxb-brand-new-secret-5555"
Status = NotificationDelivery.Status


@pytest.fixture
def admin_client(client: Client, django_user_model: Any) -> Client:
    """pytest-django's, without a password: hashing one costs a second per test."""
    admin = django_user_model.objects.create_superuser("admin", "admin@example.com", None)
    client.force_login(admin)
    return client


@pytest.fixture
def slack() -> NotificationProvider:
    return NotificationProvider.objects.create(
        name="team", type="slack", config={"token": TOKEN, "channel": "#alarm"}
    )


def raw_config(provider: NotificationProvider) -> dict[str, Any]:
    """The config as stored, read past the ORM."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT config::text FROM notifications_notificationprovider WHERE id = %s",
            [provider.pk],
        )
        return dict(json.loads(cursor.fetchone()[0]))


def assert_no_secret_in(html: str, *plain: str) -> None:
    for secret in plain:
        assert secret not in html
    assert "enc:v1:" not in html


# --- secrets at rest ---------------------------------------------------------------------------


def test_secrets_are_encrypted_in_the_table(slack: NotificationProvider) -> None:
    stored = raw_config(slack)
    assert stored["channel"] == "#alarm"  # not a secret
    assert stored["token"].startswith("enc:v1:")
    assert TOKEN not in json.dumps(stored)
    fresh = NotificationProvider.objects.get()
    assert fresh.plain_config() == {"token": TOKEN, "channel": "#alarm"}
    assert fresh.secrets() == {"token": TOKEN}
    assert fresh.masked_config() == {"token": "••••9876", "channel": "#alarm"}
    assert fresh.secret_flags() == {"has_token": True}


def test_saving_again_keeps_the_stored_secret_as_is(slack: NotificationProvider) -> None:
    before = raw_config(slack)["token"]
    fresh = NotificationProvider.objects.get()
    fresh.enabled = False
    fresh.save()
    assert raw_config(slack)["token"] == before


def test_a_plaintext_row_from_before_keeps_working_and_is_encrypted_on_save(
    slack: NotificationProvider,
) -> None:
    NotificationProvider.objects.filter(pk=slack.pk).update(
        config={"token": TOKEN, "channel": "#a"}
    )
    old = NotificationProvider.objects.get()
    assert old.plain_config()["token"] == TOKEN
    old.save()
    assert raw_config(slack)["token"].startswith("enc:v1:")


def test_webhook_secrets_are_the_types_secret_fields() -> None:
    hook = NotificationProvider.objects.create(
        name="hook",
        type="webhook",
        config={"url": "https://h.example/x", "auth": "basic", "username": "u", "password": "pw"},
    )
    stored = raw_config(hook)
    assert (stored["url"], stored["username"]) == ("https://h.example/x", "u")
    assert stored["password"].startswith("enc:v1:")
    assert hook.secret_flags() == {
        "has_token": False,
        "has_password": True,
        "has_header_value": False,
    }


@pytest.mark.parametrize(
    ("provider_type", "config", "errors"),
    [
        ("slack", {"channel": "#a"}, {"config": ["config.token: "]}),
        ("webhook", {"url": "ftp://x.example"}, {"config": ["config.url: Not a usable URL"]}),
        ("webhook", {"url": "https://x.example", "auth": "nope"}, {"config": ["config.auth: "]}),
        ("webhook", [1, 2], {"config": ["config: must be a JSON object"]}),
        ("carrier-pigeon", {}, {"type": ["unknown provider type 'carrier-pigeon'"]}),
    ],
)
def test_clean_gives_field_level_messages(
    provider_type: str, config: Any, errors: dict[str, list[str]]
) -> None:
    provider = NotificationProvider(name="p", type=provider_type, config=config)
    with pytest.raises(ValidationError) as caught:
        provider.clean()
    for field, prefixes in errors.items():
        got = caught.value.message_dict[field]
        assert all(any(m.startswith(p) for m in got) for p in prefixes), got


def test_clean_reports_a_secret_that_no_longer_decrypts(
    slack: NotificationProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(crypto.KEY_ENV, Fernet.generate_key().decode())  # the key changed
    with pytest.raises(ValidationError, match="does not decrypt with the current key"):
        NotificationProvider.objects.get().clean()


def test_save_refuses_an_unknown_type() -> None:
    with pytest.raises(ValueError, match="unknown provider type 'fax'; known types: webhook"):
        NotificationProvider(name="p", type="fax", config={"token": "t"}).save()
    assert not NotificationProvider.objects.exists()


# --- provider admin ----------------------------------------------------------------------------


def change_url(provider: NotificationProvider) -> str:
    return reverse("admin:notifications_notificationprovider_change", args=[provider.pk])


def post_provider(client: Client, url: str, config: Any, **fields: Any) -> Any:
    data = {"name": "team", "type": "slack", "enabled": "on", **fields}
    data["config"] = config if isinstance(config, str) else json.dumps(config)
    return client.post(url, data)


def test_the_list_shows_secrets_masked(admin_client: Client, slack: NotificationProvider) -> None:
    html = admin_client.get(reverse("admin:notifications_notificationprovider_changelist")).text
    assert "••••9876" in html
    assert "has_token: yes" in html
    assert_no_secret_in(html, TOKEN)


def test_the_change_form_shows_secrets_masked(
    admin_client: Client, slack: NotificationProvider
) -> None:
    html = admin_client.get(change_url(slack)).text
    assert "••••9876" in html
    assert "#alarm" in html
    assert_no_secret_in(html, TOKEN)


@pytest.mark.parametrize(
    ("provider_type", "config"),
    [("fax", {"token": TOKEN}), ("slack", [TOKEN]), ("fax", [TOKEN])],
)
def test_rows_written_past_save_still_show_without_secrets(
    admin_client: Client, slack: NotificationProvider, provider_type: str, config: Any
) -> None:
    NotificationProvider.objects.filter(pk=slack.pk).update(type=provider_type, config=config)
    for url in (reverse("admin:notifications_notificationprovider_changelist"), change_url(slack)):
        response = admin_client.get(url)
        assert response.status_code == 200
        assert_no_secret_in(response.text, TOKEN)


@pytest.mark.parametrize(
    "kept_as", ["", "••••9876", "••••", None], ids=["blank", "mask", "bare-mask", "absent"]
)
def test_saving_without_a_new_secret_keeps_the_old_one(
    admin_client: Client, slack: NotificationProvider, kept_as: str | None
) -> None:
    config: dict[str, Any] = {"channel": "#new"}
    if kept_as is not None:
        config["token"] = kept_as
    response = post_provider(admin_client, change_url(slack), config)
    assert response.status_code == 302, response.text
    fresh = NotificationProvider.objects.get()
    assert fresh.plain_config() == {"token": TOKEN, "channel": "#new"}


def test_a_new_secret_replaces_the_old_one_encrypted(
    admin_client: Client, slack: NotificationProvider
) -> None:
    post_provider(admin_client, change_url(slack), {"token": NEW_TOKEN, "channel": "#alarm"})
    assert NotificationProvider.objects.get().secrets() == {"token": NEW_TOKEN}
    assert NEW_TOKEN not in json.dumps(raw_config(slack))


def test_null_removes_a_secret(admin_client: Client) -> None:
    hook = NotificationProvider.objects.create(
        name="hook", type="webhook", config={"url": "https://h.example", "token": "t" * 20}
    )
    response = post_provider(
        admin_client, change_url(hook), {"url": "https://h.example", "token": None},
        name="hook", type="webhook",
    )  # fmt: skip
    assert response.status_code == 302, response.text
    assert NotificationProvider.objects.get().config == {"url": "https://h.example"}


def test_adding_a_provider_stores_its_secret_encrypted(admin_client: Client) -> None:
    url = reverse("admin:notifications_notificationprovider_add")
    response = post_provider(admin_client, url, {"token": TOKEN, "channel": "#a"})
    assert response.status_code == 302, response.text
    provider = NotificationProvider.objects.get()
    assert raw_config(provider)["token"].startswith("enc:v1:")
    assert provider.secrets() == {"token": TOKEN}


@pytest.mark.parametrize(
    ("config", "fields", "shown"),
    [
        ({"token": NEW_TOKEN}, {}, "config.channel: "),
        ({"url": "ftp://h.example"}, {"type": "webhook"}, "config.url: Not a usable URL"),
        ("{not json", {}, "Enter a valid JSON"),
        ("[1]", {}, "config: must be a JSON object"),
        ({"token": NEW_TOKEN}, {"type": "fax"}, "fax is not one of the available choices"),
    ],
)
def test_config_errors_are_shown_and_nothing_is_saved(
    admin_client: Client, slack: NotificationProvider, config: Any, fields: Any, shown: str
) -> None:
    before = raw_config(slack)
    response = post_provider(admin_client, change_url(slack), config, **fields)
    assert response.status_code == 200
    assert shown in response.text
    assert_no_secret_in(response.text, TOKEN, NEW_TOKEN)
    assert raw_config(slack) == before


def test_send_test_enqueues_one_delivery_per_enabled_provider(
    admin_client: Client, slack: NotificationProvider
) -> None:
    off = NotificationProvider.objects.create(
        name="off", type="slack", enabled=False, config={"token": "t", "channel": "#c"}
    )
    response = admin_client.post(
        reverse("admin:notifications_notificationprovider_changelist"),
        {"action": "send_test", "_selected_action": [slack.pk, off.pk]},
        follow=True,
    )
    delivery = NotificationDelivery.objects.get()
    assert (delivery.provider_id, delivery.status, delivery.data) == (
        slack.pk,
        "pending",
        {"test": True},
    )
    assert "1 disabled provider(s) skipped" in response.text


# --- delivery and log admin --------------------------------------------------------------------


def make(status: str, **fields: Any) -> NotificationDelivery:
    return NotificationDelivery.objects.create(
        message=f"{status} {fields}", status=status, attempts=3, **fields
    )


@pytest.fixture
def one_of_each() -> dict[str, NotificationDelivery]:
    now = timezone.now()
    return {
        "pending_later": make(Status.PENDING, next_attempt_at=now + timedelta(hours=1)),
        "sending_expired": make(
            Status.SENDING, locked_by="w1", locked_until=now - timedelta(seconds=1)
        ),
        "sending_leased": make(
            Status.SENDING, locked_by="w1", locked_until=now + timedelta(minutes=1)
        ),
        "dead": make(Status.DEAD, last_error_code="http_400"),
        "sent": make(Status.SENT),
    }


def run_action(client: Client, action: str, rows: dict[str, NotificationDelivery]) -> Any:
    return client.post(
        reverse("admin:notifications_notificationdelivery_changelist"),
        {"action": action, "_selected_action": [row.pk for row in rows.values()]},
        follow=True,
    )


def states(rows: dict[str, NotificationDelivery]) -> dict[str, tuple[str, int, str]]:
    out = {}
    for name, row in rows.items():
        row.refresh_from_db()
        out[name] = (row.status, row.attempts, row.locked_by)
    return out


def test_retry_now_makes_retryable_rows_due_and_keeps_attempts(
    admin_client: Client, one_of_each: dict[str, NotificationDelivery]
) -> None:
    before = timezone.now()
    response = run_action(admin_client, "retry_now", one_of_each)
    assert states(one_of_each) == {
        "pending_later": ("pending", 3, ""),
        "sending_expired": ("pending", 3, ""),
        "sending_leased": ("sending", 3, "w1"),  # in flight: left to its worker
        "dead": ("pending", 3, ""),
        "sent": ("sent", 3, ""),
    }
    for name in ("pending_later", "sending_expired", "dead"):
        assert before <= one_of_each[name].next_attempt_at <= timezone.now()
        assert one_of_each[name].locked_until is None
    assert "2 deliver(y/ies) left alone" in response.text


def test_requeue_dead_resets_attempts_of_dead_rows_only(
    admin_client: Client, one_of_each: dict[str, NotificationDelivery]
) -> None:
    run_action(admin_client, "requeue_dead", one_of_each)
    assert states(one_of_each) == {
        "pending_later": ("pending", 3, ""),
        "sending_expired": ("sending", 3, "w1"),
        "sending_leased": ("sending", 3, "w1"),
        "dead": ("pending", 0, ""),
        "sent": ("sent", 3, ""),
    }
    assert one_of_each["dead"].next_attempt_at <= timezone.now()


@pytest.mark.parametrize(
    "query",
    [
        "",
        "?status__exact=dead",
        "?q=http",
        "?q=key-42",
        "?created_at__gte=2020-01-01+00%3A00%3A00%2B00%3A00",
        "?provider__id__exact=1",
    ],
)
def test_the_delivery_list_filters_and_searches(
    admin_client: Client, one_of_each: dict[str, NotificationDelivery], query: str
) -> None:
    NotificationDelivery.objects.filter(pk=one_of_each["dead"].pk).update(idempotency_key="key-42")
    url = reverse("admin:notifications_notificationdelivery_changelist") + query
    assert admin_client.get(url).status_code == 200


def test_the_log_is_read_only(admin_client: Client, slack: NotificationProvider) -> None:
    delivery = make(Status.SENT, provider=slack)
    log = NotificationLog.objects.create(
        delivery=delivery, provider=slack, attempt=1, outcome="sent", http_status=200
    )
    changelist = reverse("admin:notifications_notificationlog_changelist")
    assert admin_client.get(changelist + "?outcome__exact=sent").status_code == 200
    change = reverse("admin:notifications_notificationlog_change", args=[log.pk])
    assert admin_client.post(change, {"attempt": 9}).status_code == 403
    assert admin_client.get(reverse("admin:notifications_notificationlog_add")).status_code == 403


# --- the actions wake the worker -----------------------------------------------------------------


@pytest.fixture
def listening(django_db_setup: None) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(db.conninfo("test-admin-outbox"), autocommit=True) as conn:
        conn.execute("LISTEN notifications_outbox")
        yield conn


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("action", ["retry_now", "requeue_dead"])
def test_the_delivery_actions_notify_the_worker(
    admin_client: Client, listening: psycopg.Connection[Any], action: str
) -> None:
    dead = make(Status.DEAD)
    run_action(admin_client, action, {"dead": dead})
    heard = [n.payload for n in listening.notifies(timeout=2.0, stop_after=1)]
    assert [payload.split(" ")[0] for payload in heard] == [str(dead.pk)]
