"""The NOTIFY trigger of migration 0002 against real PostgreSQL, heard on a separate connection.

Transactional tests: NOTIFY is delivered on commit only. "No notify" is proven without sleeping:
a marker NOTIFY is sent after the write that must stay silent; PostgreSQL delivers in commit
order, so when the marker arrives first, nothing came before it.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from cryptography.fernet import Fernet
from django.db import connection, transaction
from django.utils import timezone

import notifications.outbox
from notifications import crypto
from notifications.models import NotificationDelivery, NotificationProvider
from notifications.outbox import enqueue
from services import db

pytestmark = pytest.mark.django_db(transaction=True)

CHANNEL = "notifications_outbox"
MARKER = "marker"
WAIT = 2.0  # seconds; a notification normally arrives within a millisecond
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Listening:
    """A psycopg session LISTENing on the outbox channel, outside Django."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def next_payload(self) -> str:
        for notify in self.conn.notifies(timeout=WAIT, stop_after=1):
            assert notify.channel == CHANNEL
            return notify.payload
        raise AssertionError(f"no notification on {CHANNEL} within {WAIT} s")

    def assert_silent(self) -> None:
        """Nothing was notified before now: a marker sent now is the next thing heard."""
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, %s)", [CHANNEL, MARKER])
        assert self.next_payload() == MARKER


@pytest.fixture(autouse=True)
def notifications_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(crypto.KEY_ENV, Fernet.generate_key().decode())


@pytest.fixture
def listening(django_db_setup: None) -> Iterator[Listening]:
    with psycopg.connect(db.conninfo("test-outbox-trigger"), autocommit=True) as conn:
        conn.execute(f"LISTEN {CHANNEL}")
        yield Listening(conn)


@pytest.fixture
def phone() -> NotificationProvider:
    return NotificationProvider.objects.create(
        name="phone", type="webhook", config={"url": "https://hooks.example/phone"}
    )


def payload_of(delivery: NotificationDelivery) -> tuple[int, Decimal]:
    """What the trigger must send for the stored row: its id and exact epoch seconds."""
    delivery.refresh_from_db()
    microseconds = (delivery.next_attempt_at - EPOCH) // timedelta(microseconds=1)
    return delivery.pk, Decimal(microseconds) / Decimal(1_000_000)


def parse(payload: str) -> tuple[int, Decimal]:
    delivery_id, epoch = payload.split(" ")
    return int(delivery_id), Decimal(epoch)


def test_an_insert_notifies_id_and_due_time(
    listening: Listening, phone: NotificationProvider
) -> None:
    delivery = enqueue(phone, "now")
    payload = listening.next_payload()
    assert parse(payload) == payload_of(delivery)
    assert len(payload.encode()) < 100  # far below PostgreSQL's 8000-byte cap


def test_an_insert_due_later_carries_its_future_time(
    listening: Listening, phone: NotificationProvider
) -> None:
    later = datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    delivery = enqueue(phone, "later", send_after=later)
    assert listening.next_payload() == f"{delivery.pk} {Decimal(later.timestamp()):.6f}"


def test_an_insert_that_is_not_pending_is_silent(
    listening: Listening, phone: NotificationProvider
) -> None:
    NotificationDelivery.objects.create(provider=phone, message="done", status="sent")
    listening.assert_silent()


@pytest.mark.parametrize("finished", ["sent", "dead", "sending"])
def test_putting_a_row_back_to_pending_notifies(
    listening: Listening, phone: NotificationProvider, finished: str
) -> None:
    delivery = NotificationDelivery.objects.create(provider=phone, message="m", status=finished)
    listening.assert_silent()
    NotificationDelivery.objects.filter(pk=delivery.pk).update(status="pending")
    assert parse(listening.next_payload()) == payload_of(delivery)


def test_moving_a_pending_rows_time_notifies(
    listening: Listening, phone: NotificationProvider
) -> None:
    delivery = enqueue(phone, "retry", send_after=timezone.now() + timedelta(hours=1))
    listening.next_payload()
    NotificationDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
    assert parse(listening.next_payload()) == payload_of(delivery)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"title": "edited"}, id="title"),
        pytest.param({"data": {"x": 1}, "last_error_message": "e"}, id="other-fields"),
        pytest.param({"status": "sending", "locked_by": "w1"}, id="claimed"),
        pytest.param({"status": "pending"}, id="pending-to-pending"),
    ],
)
def test_other_updates_are_silent(
    listening: Listening, phone: NotificationProvider, change: dict[str, Any]
) -> None:
    delivery = enqueue(phone, "m")
    listening.next_payload()
    NotificationDelivery.objects.filter(pk=delivery.pk).update(**change)
    listening.assert_silent()


def test_an_orm_save_of_a_pending_row_without_a_new_time_is_silent(
    listening: Listening, phone: NotificationProvider
) -> None:
    delivery = enqueue(phone, "m")
    listening.next_payload()
    delivery.title = "edited"
    delivery.save()  # writes every column, status and next_attempt_at included
    listening.assert_silent()


def test_a_rolled_back_insert_is_silent(listening: Listening, phone: NotificationProvider) -> None:
    with transaction.atomic():
        enqueue(phone, "never")
        transaction.set_rollback(True)
    listening.assert_silent()


def documented_sql_example() -> str:
    """The ``enqueue_sql_example::`` block of the outbox module's docstring, as written."""
    doc = notifications.outbox.__doc__ or ""
    block = doc.split("enqueue_sql_example::\n\n", 1)[1].split("\n\n", 1)[0]
    return textwrap.dedent(block)


def test_the_documented_raw_sql_insert_notifies_and_is_idempotent(
    listening: Listening, phone: NotificationProvider
) -> None:
    sql = documented_sql_example()
    assert sql.startswith("INSERT INTO notifications_notificationdelivery")
    with connection.cursor() as cursor:
        cursor.execute(sql)
    delivery = NotificationDelivery.objects.get()
    assert (delivery.provider_id, delivery.title, delivery.data) == (
        phone.pk, "Back door", {"zone": "back"}
    )  # fmt: skip
    assert parse(listening.next_payload()) == payload_of(delivery)
    with connection.cursor() as cursor:
        cursor.execute(sql)  # ON CONFLICT DO NOTHING: no second row, no second wake-up
    assert NotificationDelivery.objects.count() == 1
    listening.assert_silent()
