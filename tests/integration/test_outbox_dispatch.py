"""The outbox component against real PostgreSQL and a real local HTTP server per provider."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta

import pytest
from django.db import connection

from notifications.dispatcher import OutboxComponent, OutboxSettings
from notifications.models import NotificationDelivery
from tests.fakes.provider_servers import FakeResponse
from tests.integration.outbox_support import (
    DbCall,
    Outbox,
    enqueue,
    make_provider,
    outcomes,
    row,
)

pytestmark = pytest.mark.django_db(transaction=True)


async def test_an_insert_is_sent_at_once_with_its_idempotency_key(
    outbox: Outbox, db_call: DbCall
) -> None:
    component = await outbox.start()
    provider = await db_call(make_provider, outbox.fake)
    [pk] = await db_call(enqueue, provider)
    [request] = await outbox.fake.wait_for(1)
    await component.wait_written(1)
    delivered = await db_call(row, pk)
    assert request.path == "/webhook"
    assert request.headers["Idempotency-Key"] == delivered["idempotency_key"]
    assert (delivered["status"], delivered["attempts"], delivered["locked_by"]) == ("sent", 1, "")
    assert await db_call(outcomes, pk) == ["sent"]


async def test_transient_failure_is_retried_after_its_backoff(
    outbox: Outbox, db_call: DbCall
) -> None:
    component = await outbox.start()
    provider = await db_call(make_provider, outbox.fake)
    outbox.fake.respond("/webhook", [FakeResponse(503)])
    [pk] = await db_call(enqueue, provider)
    await component.wait_written(1)
    retried = await db_call(row, pk)
    assert (retried["status"], retried["last_error_code"]) == ("pending", "http_503")
    wait = (retried["next_attempt_at"] - outbox.clock.now()).total_seconds()
    assert 5 <= wait < 6  # base 5 s + up to 1 s of jitter
    outbox.clock.advance(wait - 0.01)
    assert component.written == 1 and len(outbox.fake.requests) == 1  # never early
    outbox.clock.advance(0.02)
    await component.wait_written(2)
    assert (await db_call(row, pk))["status"] == "sent"
    assert await db_call(outcomes, pk) == ["retry", "sent"]


async def test_retry_after_of_a_429_is_honoured(outbox: Outbox, db_call: DbCall) -> None:
    component = await outbox.start()
    provider = await db_call(make_provider, outbox.fake)
    outbox.fake.respond("/webhook", [FakeResponse(429, headers={"Retry-After": "120"})])
    [pk] = await db_call(enqueue, provider)
    await component.wait_written(1)
    retried = await db_call(row, pk)
    assert retried["last_error_code"] == "rate_limited"
    assert (retried["next_attempt_at"] - outbox.clock.now()).total_seconds() >= 120


@pytest.mark.parametrize(
    ("response", "code"),
    [
        (FakeResponse(404), "http_404"),
        (FakeResponse(401), "http_401"),
        (FakeResponse(400), "http_400"),
    ],
)
async def test_permanent_failure_is_dead_at_once(
    outbox: Outbox, db_call: DbCall, response: FakeResponse, code: str
) -> None:
    component = await outbox.start()
    provider = await db_call(make_provider, outbox.fake)
    outbox.fake.respond("/webhook", [response])
    [pk] = await db_call(enqueue, provider)
    await component.wait_written(1)
    dead = await db_call(row, pk)
    assert (dead["status"], dead["last_error_code"], dead["attempts"]) == ("dead", code, 1)


async def test_attempts_used_up_is_dead(outbox: Outbox, db_call: DbCall) -> None:
    component = await outbox.start()
    provider = await db_call(make_provider, outbox.fake)
    outbox.fake.respond("/webhook", [FakeResponse(500), FakeResponse(500)])
    [pk] = await db_call(enqueue, provider, max_attempts=2)
    await component.wait_written(1)
    outbox.clock.advance(10)
    await component.wait_written(2)
    dead = await db_call(row, pk)
    assert (dead["status"], dead["attempts"], dead["last_error_code"]) == ("dead", 2, "http_500")
    assert "gave up after 2 attempts" in dead["last_error_message"]


async def test_disabled_and_deleted_providers_dead_letter(outbox: Outbox, db_call: DbCall) -> None:
    component = await outbox.start()
    disabled = await db_call(make_provider, outbox.fake, "off", enabled=False)
    [off] = await db_call(enqueue, disabled)
    [orphan] = await db_call(enqueue, None)
    await component.wait_written(2)
    assert (await db_call(row, off))["last_error_code"] == "provider_disabled"
    assert (await db_call(row, orphan))["last_error_code"] == "provider_deleted"
    assert outbox.fake.requests == []


async def test_send_after_waits_for_its_time(outbox: Outbox, db_call: DbCall) -> None:
    component = await outbox.start()
    provider = await db_call(make_provider, outbox.fake)
    later = outbox.clock.now() + timedelta(seconds=30)
    [pk] = await db_call(enqueue, provider, next_attempt_at=later)
    await asyncio.wait_for(component.wait_next_due(later), 5)
    assert outbox.fake.requests == []
    outbox.clock.advance(30)
    await component.wait_written(1)
    assert (await db_call(row, pk))["status"] == "sent"


async def test_requeue_wakes_the_worker(outbox: Outbox, db_call: DbCall) -> None:
    component = await outbox.start()
    provider = await db_call(make_provider, outbox.fake)
    outbox.fake.respond("/webhook", [FakeResponse(404)])
    [pk] = await db_call(enqueue, provider)
    await component.wait_written(1)
    await db_call(_requeue, pk)
    await component.wait_written(2)
    assert (await db_call(row, pk))["status"] == "sent"


async def test_rows_committed_while_the_listener_was_away_are_sent(
    outbox: Outbox, db_call: DbCall
) -> None:
    component = await outbox.start()
    provider = await db_call(make_provider, outbox.fake)
    reconnected = asyncio.Event()
    outbox.listener.subscribe("reconnect_probe", lambda _: None, on_connect=reconnected.set)
    await asyncio.wait_for(reconnected.wait(), 5)
    reconnected.clear()
    await db_call(_kill_listener)
    pks = await db_call(enqueue, provider, 5)  # may be committed before the listener is back
    await asyncio.wait_for(reconnected.wait(), 5)
    await component.wait_written(5)
    assert {(await db_call(row, pk))["status"] for pk in pks} == {"sent"}


async def test_a_lease_left_by_a_dead_worker_is_reclaimed_when_it_expires(
    outbox: Outbox, db_call: DbCall
) -> None:
    provider = await db_call(make_provider, outbox.fake)
    expires = outbox.clock.now() + timedelta(seconds=20)
    [pk] = await db_call(
        enqueue, provider, status="sending", attempts=1, locked_by="dead", locked_until=expires
    )
    component = await outbox.start()
    await asyncio.wait_for(component.wait_next_due(expires), 5)
    assert outbox.fake.requests == []
    outbox.clock.advance(20.5)
    await component.wait_written(1)
    reclaimed = await db_call(row, pk)
    assert (reclaimed["status"], reclaimed["attempts"]) == ("sent", 2)


async def test_its_own_leases_put_nothing_on_the_timer(outbox: Outbox, db_call: DbCall) -> None:
    """Rows in flight end with the results this worker writes: no wake-up at their lease's end
    (it would cost an idle worker a statement a lease after its last send)."""
    component = await outbox.start()
    provider = await db_call(make_provider, outbox.fake)
    hold = asyncio.Event()
    outbox.fake.respond("/webhook", [FakeResponse(release=hold)])
    await db_call(enqueue, provider)
    await outbox.fake.wait_for(1)  # held: still ``sending`` under this worker's lease
    await db_call(enqueue, provider)  # claimed by a statement that sees the first one's lease
    await component.wait_written(1)
    assert component.health()["next_due_at"] is None
    hold.set()
    await component.wait_written(2)


async def test_two_workers_send_each_of_2000_deliveries_exactly_once(
    outbox: Outbox, db_call: DbCall
) -> None:
    provider = await db_call(make_provider, outbox.fake)
    first, second = await outbox.start(workers=2, concurrency=20, batch=20), outbox.components[1]
    pks = await db_call(enqueue, provider, 2000)
    await outbox.fake.wait_for(2000, timeout=60)
    await asyncio.wait_for(asyncio.gather(first.wait_idle(), second.wait_idle()), 30)
    keys = Counter(r.headers["Idempotency-Key"] for r in outbox.fake.requests)
    assert len(keys) == 2000 and max(keys.values()) == 1
    assert await db_call(_status_counts, pks) == {"sent": 2000}
    assert first.sent > 0 and second.sent > 0  # both took part


async def test_stop_with_sends_in_flight_leaves_nothing_sending(
    outbox: Outbox, db_call: DbCall
) -> None:
    from services.runner import Runner

    provider = await db_call(make_provider, outbox.fake)
    hold = asyncio.Event()
    outbox.fake.respond("/webhook", [FakeResponse(release=hold)] * 3)
    component = OutboxComponent(outbox.clock, "w0", outbox.listener.subscribe,
                                OutboxSettings(allow_loopback=True))  # fmt: skip
    listening = asyncio.create_task(outbox.listener.run(outbox.stopping))
    runner = Runner([component], grace=0.2)
    main = asyncio.create_task(runner.run())
    pks = await db_call(enqueue, provider, 3)
    await outbox.fake.wait_for(3)
    runner.stop()
    assert await main == 0
    outbox.stopping.set()
    await listening
    hold.set()
    statuses = await db_call(_status_counts, pks)
    assert statuses == {"pending": 3}  # handed back, due now, for any worker to resend
    assert {(await db_call(row, pk))["last_error_code"] for pk in pks} == {"shutdown"}


# --- helpers -----------------------------------------------------------------------------------


def _requeue(pk: int) -> None:
    NotificationDelivery.objects.filter(pk=pk).update(status="pending", attempts=0)


def _kill_listener() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'alarm-worker-listener' AND datname = current_database()"
        )


def _status_counts(pks: list[int]) -> dict[str, int]:
    return dict(
        Counter(NotificationDelivery.objects.filter(pk__in=pks).values_list("status", flat=True))
    )
