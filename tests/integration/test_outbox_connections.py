"""The outbox's own connections: lost ones are reopened inside the component, and rows claimed
ahead of the send slots go back unsent when the worker stops."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from django.db import connection

from notifications.dispatcher import APPLICATION_NAME, OutboxComponent, OutboxSettings
from notifications.models import NotificationLog
from services.runner import Runner
from tests.fakes.provider_servers import FakeResponse
from tests.integration.outbox_support import (
    DbCall,
    Outbox,
    enqueue,
    make_provider,
    row,
)

pytestmark = pytest.mark.django_db(transaction=True)


def _outbox_backends(what: str = "count(*)") -> int:
    """``what`` over the outbox's backends: how many there are, or terminate them."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {what} FROM pg_stat_activity "
            "WHERE application_name = %s AND datname = current_database()",
            [APPLICATION_NAME],
        )
        (result,) = cursor.fetchone() or (0,)
    return int(result)


def _kill_outbox_connections() -> int:
    return _outbox_backends("count(pg_terminate_backend(pid))")


def _logs(pk: int) -> list[tuple[int, str]]:
    return list(
        NotificationLog.objects.filter(delivery_id=pk)
        .order_by("id")
        .values_list("attempt", "outcome")
    )


async def _start(outbox: Outbox, **settings: Any) -> tuple[OutboxComponent, asyncio.Task[None]]:
    outbox.tasks.append(asyncio.create_task(outbox.listener.run(outbox.stopping)))
    component = OutboxComponent(
        outbox.clock, "w0", outbox.listener.subscribe,
        OutboxSettings(allow_loopback=True, **settings), rng=lambda: 1.0,
    )  # fmt: skip
    task = asyncio.create_task(component.run(outbox.stopping))
    outbox.tasks.append(task)
    await asyncio.wait_for(outbox.listener.ready.wait(), 5)
    return component, task


async def test_lost_connections_are_reopened_after_a_backoff_and_no_result_is_lost(
    outbox: Outbox, db_call: DbCall
) -> None:
    component, task = await _start(outbox, reconnect_base=5.0)
    provider = await db_call(make_provider, outbox.fake)
    hold = asyncio.Event()
    outbox.fake.respond("/webhook", [FakeResponse(release=hold)])
    [pk] = await db_call(enqueue, provider)
    await outbox.fake.wait_for(1)  # in flight: its result is not written yet
    assert await db_call(_kill_outbox_connections) == 2  # claims and results
    hold.set()  # the result comes; writing it finds the connection gone

    await asyncio.wait_for(outbox.clock.wait_for_sleepers(1), 5)  # backing off, 5 s
    health = component.health()
    assert (health["connection"], health["reconnects"]) == ("backoff", 1)
    assert health["results_pending"] == 1 and component.written == 0
    assert await db_call(_outbox_backends) == 0
    outbox.clock.advance(5)
    await asyncio.wait_for(component.wait_written(1), 5)

    assert not task.done()  # reconnected inside the component, never crashed
    assert component.health()["connection"] == "open"
    sent = await db_call(row, pk)
    assert (sent["status"], sent["attempts"], sent["locked_by"]) == ("sent", 1, "")
    assert await db_call(_logs, pk) == [(1, "sent")]
    assert len(outbox.fake.requests) == 1
    # The next delivery goes through the new connections at once.
    [again] = await db_call(enqueue, provider)
    await asyncio.wait_for(component.wait_written(2), 5)
    assert (await db_call(row, again))["status"] == "sent"


async def test_rows_claimed_ahead_go_back_unsent_and_uncounted_at_stop(
    outbox: Outbox, db_call: DbCall
) -> None:
    provider = await db_call(make_provider, outbox.fake)
    hold = asyncio.Event()
    outbox.fake.respond("/webhook", [FakeResponse(release=hold)])
    settings = OutboxSettings(allow_loopback=True, concurrency=1, batch=5)
    component = OutboxComponent(outbox.clock, "w0", outbox.listener.subscribe, settings)
    listening = asyncio.create_task(outbox.listener.run(outbox.stopping))
    runner = Runner([component], grace=0.2)
    main = asyncio.create_task(runner.run())
    pks = await db_call(enqueue, provider, 5)
    await outbox.fake.wait_for(1)  # one slot: one in flight, the others claimed ahead
    assert component.health()["queued"] == 4
    runner.stop()
    assert await main == 0
    outbox.stopping.set()
    await listening
    hold.set()

    rows = [await db_call(row, pk) for pk in pks]
    assert {r["status"] for r in rows} == {"pending"}
    [request] = outbox.fake.requests
    sent_first = next(r for r in rows if r["idempotency_key"] == request.headers["Idempotency-Key"])
    assert (sent_first["attempts"], sent_first["last_error_code"]) == (1, "shutdown")
    ahead = [r for r in rows if r is not sent_first]
    assert {(r["attempts"], r["last_error_code"], r["locked_by"]) for r in ahead} == {(0, "", "")}
    assert [await db_call(_logs, r["id"]) for r in ahead] == [[], [], [], []]
    assert await db_call(_logs, sent_first["id"]) == [(1, "retry")]


async def test_its_connections_plan_once_never_scan_tables_and_commit_asynchronously(
    outbox: Outbox,
) -> None:
    component, _ = await _start(outbox)
    await asyncio.wait_for(component.wait_drained(), 5)
    shown = {}
    for conn in (component._claims, component._writes):  # the settings in force on each
        assert conn is not None
        for name in ("plan_cache_mode", "enable_seqscan", "jit", "synchronous_commit"):
            row = await (await conn.execute(f"SHOW {name}")).fetchone()
            shown[name] = row[0] if row else None
    assert shown == {
        "plan_cache_mode": "force_generic_plan",
        "enable_seqscan": "off",
        "jit": "off",
        "synchronous_commit": "off",
    }
