"""notifications.outbox.enqueue and aenqueue on real PostgreSQL: rows, idempotency, validation."""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import connections, transaction
from django.utils import timezone

from notifications.models import NotificationDelivery, NotificationProvider
from notifications.outbox import aenqueue, enqueue

WAIT = 5.0  # seconds; every wait is for something that normally takes milliseconds


@pytest.fixture
def phone(db: None) -> NotificationProvider:
    return NotificationProvider.objects.create(
        name="phone", type="webhook", config={"url": "https://hooks.example/phone"}
    )


def test_defaults(phone: NotificationProvider) -> None:
    before = timezone.now()
    delivery = enqueue(phone, "The back door opened")
    row = NotificationDelivery.objects.get()
    assert row.pk == delivery.pk
    assert (row.provider_id, row.message, row.title, row.data) == (
        phone.pk, "The back door opened", "", {}
    )  # fmt: skip
    assert (row.status, row.attempts, row.max_attempts) == ("pending", 0, 5)
    assert before <= row.next_attempt_at <= timezone.now()
    assert len(row.idempotency_key) == 32
    assert (row.locked_by, row.locked_until, row.sent_at) == ("", None, None)


def test_every_argument_is_stored(phone: NotificationProvider) -> None:
    later = datetime(2031, 1, 2, 3, 4, 5, 600000, tzinfo=UTC)
    enqueue(
        phone,
        "Armed away",
        title="Alarm",
        data={"state": "armed_away", "by": ["keypad"]},
        idempotency_key="arm-2031-01-02",
        send_after=later,
        max_attempts=9,
    )
    row = NotificationDelivery.objects.get()
    assert (row.title, row.data, row.idempotency_key, row.next_attempt_at, row.max_attempts) == (
        "Alarm", {"state": "armed_away", "by": ["keypad"]}, "arm-2031-01-02", later, 9
    )  # fmt: skip


def test_the_provider_can_be_given_by_name(phone: NotificationProvider) -> None:
    assert enqueue("phone", "hi").provider_id == phone.pk


@pytest.mark.usefixtures("phone")
def test_an_unknown_name_lists_the_known_ones() -> None:
    NotificationProvider.objects.create(name="alpha", type="webhook", config={})
    with pytest.raises(
        ValueError, match=r"unknown notification provider 'fone'; known: alpha, phone"
    ):
        enqueue("fone", "hi")
    assert not NotificationDelivery.objects.exists()


@pytest.mark.django_db
def test_an_unknown_name_without_any_provider_says_so() -> None:
    with pytest.raises(ValueError, match=r"known: \(none configured\)"):
        enqueue("phone", "hi")


@pytest.mark.django_db
def test_an_unsaved_provider_is_refused() -> None:
    with pytest.raises(ValueError, match="not saved yet"):
        enqueue(NotificationProvider(name="new", type="webhook"), "hi")


def test_a_repeated_key_returns_the_first_delivery(phone: NotificationProvider) -> None:
    first = enqueue(phone, "first", idempotency_key="door-1")
    NotificationDelivery.objects.filter(pk=first.pk).update(status="sent")
    repeat = enqueue(phone, "second", title="ignored", idempotency_key="door-1")
    assert repeat.pk == first.pk
    assert (repeat.message, repeat.status) == ("first", "sent")  # the stored row, untouched
    assert NotificationDelivery.objects.count() == 1


def test_without_a_key_every_call_is_a_new_delivery(phone: NotificationProvider) -> None:
    enqueue(phone, "same")
    enqueue(phone, "same")
    assert NotificationDelivery.objects.count() == 2


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"message": ""}, "message must be non-empty"),
        ({"message": "  \n"}, "message must be non-empty"),
        ({"message": None}, "message must be non-empty"),
        ({"title": "t" * 301}, "title must be text of at most 300"),
        ({"data": ["not", "a", "dict"]}, "data must be a dict, got list"),
        ({"data": {"when": datetime(2025, 1, 1, tzinfo=UTC)}}, "data must be JSON-serializable"),
        ({"idempotency_key": ""}, "idempotency_key must be 1 to 200"),
        ({"idempotency_key": "k" * 201}, "idempotency_key must be 1 to 200"),
        ({"send_after": datetime(2030, 1, 1)}, "send_after must be a timezone-aware"),  # noqa: DTZ001
        ({"send_after": "2030-01-01T00:00:00Z"}, "send_after must be a timezone-aware"),
        ({"max_attempts": 0}, "max_attempts must be between 1 and 100, got 0"),
        ({"max_attempts": 101}, "max_attempts must be between 1 and 100, got 101"),
        ({"max_attempts": True}, "max_attempts must be a whole number"),
        ({"max_attempts": 2.5}, "max_attempts must be a whole number"),
    ],
)
def test_bad_arguments_are_refused_before_writing(
    phone: NotificationProvider, kwargs: dict[str, Any], error: str
) -> None:
    arguments = {"message": "hi", **kwargs}
    with pytest.raises(ValueError, match=error):
        enqueue(phone, arguments.pop("message"), **arguments)
    assert not NotificationDelivery.objects.exists()


@pytest.mark.parametrize("max_attempts", [1, 100])
def test_max_attempts_bounds_are_accepted(phone: NotificationProvider, max_attempts: int) -> None:
    assert enqueue(phone, "hi", max_attempts=max_attempts).max_attempts == max_attempts


def test_a_past_send_after_is_due_at_once(phone: NotificationProvider) -> None:
    past = timezone.now() - timedelta(hours=1)
    assert enqueue(phone, "hi", send_after=past).next_attempt_at == past


# --- across connections (really committed) ----------------------------------------------------


@pytest.fixture
def committed_phone(transactional_db: None) -> NotificationProvider:
    return NotificationProvider.objects.create(
        name="phone", type="webhook", config={"url": "https://hooks.example/phone"}
    )


@pytest.fixture
def threads() -> Iterator[list[threading.Thread]]:
    started: list[threading.Thread] = []
    yield started
    for thread in started:
        thread.join(WAIT)


def in_thread(threads: list[threading.Thread], results: list[Any], call: Any) -> None:
    """Run ``call`` on its own thread (so its own DB connection) and keep what it returns."""

    def run() -> None:
        try:
            results.append(call())
        except Exception as exc:  # handed to the test, which asserts on it
            results.append(exc)
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    threads.append(thread)
    thread.start()


def wait_for_a_blocked_insert() -> None:
    """Until another session waits on a lock (its insert of the same key blocks on ours)."""
    deadline = time.monotonic() + WAIT
    with connections["default"].cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute("SELECT count(*) FROM pg_locks WHERE NOT granted")
            if cursor.fetchone()[0] > 0:
                return
    raise AssertionError("the concurrent enqueue never blocked on the unique key")


def test_a_concurrent_repeat_from_another_thread_makes_one_row(
    committed_phone: NotificationProvider, threads: list[threading.Thread]
) -> None:
    # Force the race: our insert is uncommitted when the other thread's insert of the same key
    # arrives, so it finds no row, blocks on the unique index, then must read ours back.
    results: list[Any] = []
    with transaction.atomic():
        ours = enqueue(committed_phone, "ours", idempotency_key="race-1")
        in_thread(threads, results, lambda: enqueue("phone", "theirs", idempotency_key="race-1"))
        wait_for_a_blocked_insert()
    threads[0].join(WAIT)
    assert [getattr(r, "pk", r) for r in results] == [ours.pk]
    assert list(NotificationDelivery.objects.values_list("message", flat=True)) == ["ours"]


def test_two_threads_enqueueing_one_key_get_one_row(
    committed_phone: NotificationProvider, threads: list[threading.Thread]
) -> None:
    start = threading.Barrier(2)
    results: list[Any] = []

    def enqueue_after_barrier() -> NotificationDelivery:
        start.wait(WAIT)
        return enqueue("phone", "hi", idempotency_key="race-2")

    for _ in range(2):
        in_thread(threads, results, enqueue_after_barrier)
    for thread in threads:
        thread.join(WAIT)
    assert len(results) == 2
    assert all(isinstance(r, NotificationDelivery) for r in results), results
    assert results[0].pk == results[1].pk
    assert NotificationDelivery.objects.count() == 1


@pytest.fixture
async def sync_thread_connection() -> AsyncIterator[None]:
    """Closes the connection aenqueue opened in Django's sync thread, so the test DB can drop."""
    yield
    await sync_to_async(connections.close_all)()


@pytest.mark.usefixtures("sync_thread_connection")
async def test_aenqueue_writes_the_same_row(committed_phone: NotificationProvider) -> None:
    delivery = await aenqueue("phone", "async hi", idempotency_key="async-1", max_attempts=2)
    repeat = await aenqueue("phone", "again", idempotency_key="async-1")
    assert repeat.pk == delivery.pk
    assert (delivery.message, delivery.max_attempts, delivery.status) == ("async hi", 2, "pending")
    assert await NotificationDelivery.objects.acount() == 1


@pytest.mark.usefixtures("sync_thread_connection")
async def test_aenqueue_raises_like_enqueue(committed_phone: NotificationProvider) -> None:
    with pytest.raises(ValueError, match="max_attempts must be between 1 and 100"):
        await aenqueue("phone", "hi", max_attempts=0)


def test_the_enqueue_of_a_rolled_back_transaction_leaves_nothing(
    committed_phone: NotificationProvider,
) -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        enqueue(committed_phone, "never")
        raise RuntimeError("rolled back")
    assert not NotificationDelivery.objects.exists()
