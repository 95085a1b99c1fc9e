"""The status hub on the real database with a fake clock: writes, pushes, the offline rule."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from alarm.models import AlarmEvent
from realtime import store
from realtime.hub import StatusHub, status_hub
from realtime.models import IntegrationStatusRecord
from services.clock import FakeClock
from services.dbthread import AsyncStore

pytestmark = pytest.mark.django_db(transaction=True)


class Recorder:
    """The hub's publish callable: records each push."""

    def __init__(self) -> None:
        self.pushes: list[dict[str, Any]] = []

    def __call__(self, payload: dict[str, Any], *, sequence: int, timestamp: Any) -> int:
        self.pushes.append({"payload": payload, "sequence": sequence})
        return sequence

    def states(self, integration: str) -> list[str]:
        return [p["payload"][integration]["state"] for p in self.pushes]


class CountingDb:
    """``AsyncStore.call`` that counts calls and can be told to fail the next ones."""

    def __init__(self, store_: AsyncStore) -> None:
        self.store, self.calls, self.fail_next = store_, 0, 0

    async def __call__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.fail_next:
            self.fail_next -= 1
            from django.db import OperationalError

            raise OperationalError("the database is away")
        return await self.store.call(fn, *args, **kwargs)


class Running:
    def __init__(self, hub: StatusHub) -> None:
        self.hub, self.stopping = hub, asyncio.Event()
        self.task = asyncio.create_task(hub.run(self.stopping))

    async def settle(self) -> None:
        async with asyncio.timeout(10):
            await self.hub.settled()

    async def stop(self) -> None:
        self.stopping.set()
        async with asyncio.timeout(10):
            await self.task


Make = Callable[..., Awaitable[Running]]


@pytest.fixture
async def make_hub(
    clock: FakeClock, stores: list[AsyncStore]
) -> AsyncIterator[Callable[..., Awaitable[Running]]]:
    started: list[Running] = []

    async def make(**kwargs: Any) -> Running:
        store_ = AsyncStore()
        stores.append(store_)
        db = CountingDb(store_)
        kwargs.setdefault("publish", Recorder())
        hub = StatusHub(clock, db, worker_id=f"w{len(started)}", **kwargs)
        running = Running(hub)
        started.append(running)
        await running.settle()
        return running

    yield make
    for running in started:
        if not running.task.done():
            await running.stop()


def events(kind: str) -> list[AlarmEvent]:
    return list(AlarmEvent.objects.filter(event_type=kind).order_by("timestamp", "pk"))


async def db_events(db: Callable[..., Awaitable[Any]], kind: str) -> list[dict[str, Any]]:
    rows = await db(lambda: list(AlarmEvent.objects.filter(event_type=kind).values("data")))
    return [r["data"] for r in rows]


async def test_only_changes_are_written_and_pushed(make_hub: Make, db_call: Any) -> None:
    running = await make_hub()
    hub, publish = running.hub, running.hub._publish
    db: CountingDb = hub._db  # type: ignore[assignment]
    calls_at_start = db.calls  # the one load at start
    for _ in range(3):
        hub.report("mqtt", "connecting")
        hub.report("mqtt", "connected", details={"broker": "127.0.0.1:1883"})
    hub.report("mqtt", "connected")
    await running.settle()
    # connecting -> connected -> connecting -> ...: 6 real changes, written as they come or
    # coalesced into fewer writes; the repeated "connected" at the end is no change at all.
    assert hub.changes == 6 and hub.reports == 7
    assert 1 <= hub.writes <= 6 and db.calls - calls_at_start == hub.writes
    assert isinstance(publish, Recorder)
    assert publish.states("mqtt")[-1] == "online"
    numbers = [p["sequence"] for p in publish.pushes]
    assert numbers == sorted(set(numbers))
    row = await db_call(IntegrationStatusRecord.objects.get, integration="mqtt")
    assert (row.state, row.link, row.configured, row.enabled) == ("online", "connected", True, True)
    assert row.details == {"broker": "127.0.0.1:1883"}
    assert row.sequence == numbers[-1] and row.worker_id == hub.worker_id
    # nothing changes: no statement, no push
    writes, calls, pushes = hub.writes, db.calls, len(publish.pushes)
    hub.report("mqtt", "connected", details={"broker": "127.0.0.1:1883"})
    await running.settle()
    assert (hub.writes, db.calls, len(publish.pushes)) == (writes, calls, pushes)


async def test_the_push_carries_every_row(make_hub: Make, db_call: Any) -> None:
    """Two hubs (two workers) holding different integrations: each push shows both."""
    first, second = await make_hub(), await make_hub()
    first.hub.report("mqtt", "connected")
    await first.settle()
    second.hub.report("home_assistant", "auth_failed", error="invalid token")
    await second.settle()
    pushed = second.hub._publish.pushes[-1]  # type: ignore[attr-defined]
    assert pushed["payload"]["mqtt"]["connected"] is True
    assert pushed["payload"]["home_assistant"]["state"] == "auth_failed"
    assert pushed["payload"]["home_assistant"]["last_error"] == "invalid token"
    first_number = first.hub._publish.pushes[-1]["sequence"]  # type: ignore[attr-defined]
    assert pushed["sequence"] > first_number
    number, statuses = await db_call(store.snapshot)
    assert number == pushed["sequence"] and set(statuses) == {"mqtt", "home_assistant"}


async def test_offline_for_60_s_records_one_event_and_one_recovery(
    make_hub: Make, clock: FakeClock, db_call: Any
) -> None:
    running = await make_hub()
    hub = running.hub
    hub.report("mqtt", "connected")
    hub.report("mqtt", "disconnected", error="connection refused")
    await running.settle()
    clock.advance(30)
    hub.report("mqtt", "connecting")  # still offline: the timer is not restarted
    hub.report("mqtt", "disconnected", error="connection refused")
    clock.advance(29.9)
    await running.settle()
    assert await db_events(db_call, "integration_offline") == []
    clock.advance(0.1)
    await running.settle()
    offline = await db_events(db_call, "integration_offline")
    assert len(offline) == 1
    assert offline[0]["integration"] == "mqtt"
    assert offline[0]["last_error"] == "connection refused"
    clock.advance(3600)  # a long outage: still one event
    hub.report("mqtt", "connecting")
    hub.report("mqtt", "disconnected")
    clock.advance(120)
    await running.settle()
    assert len(await db_events(db_call, "integration_offline")) == 1
    row = await db_call(IntegrationStatusRecord.objects.get, integration="mqtt")
    assert row.offline_reported
    hub.report("mqtt", "connected")
    await running.settle()
    recovered = await db_events(db_call, "integration_recovered")
    assert len(recovered) == 1
    assert recovered[0]["offline_seconds"] == pytest.approx(30 + 30 + 3600 + 120)
    row = await db_call(IntegrationStatusRecord.objects.get, integration="mqtt")
    assert not row.offline_reported


async def test_flapping_shorter_than_60_s_records_nothing(
    make_hub: Make, clock: FakeClock, db_call: Any
) -> None:
    running = await make_hub()
    hub = running.hub
    hub.report("zigbee2mqtt", "connected")
    for _ in range(20):
        hub.report("zigbee2mqtt", "unavailable")
        clock.advance(59)
        hub.report("zigbee2mqtt", "available")
        clock.advance(1)
        await running.settle()
    clock.advance(600)
    await running.settle()
    assert await db_events(db_call, "integration_offline") == []
    assert await db_events(db_call, "integration_recovered") == []


async def test_not_configured_or_disabled_is_never_offline(
    make_hub: Make, clock: FakeClock, db_call: Any
) -> None:
    running = await make_hub()
    hub = running.hub
    hub.report("frigate", "configured", details={"enabled": False})
    hub.report("zwavejs", "connecting")
    clock.advance(30)
    hub.report("zwavejs", "unconfigured")  # cancels its timer
    clock.advance(600)
    await running.settle()
    assert await db_events(db_call, "integration_offline") == []
    assert hub.health()["offline_timers"] == 0


async def test_a_restart_mid_outage_neither_repeats_nor_forgets(
    make_hub: Make, clock: FakeClock, db_call: Any
) -> None:
    first = await make_hub()
    first.hub.report("home_assistant", "connected")
    first.hub.report("home_assistant", "disconnected", error="timeout")
    clock.advance(61)
    await first.settle()
    await first.stop()
    assert len(await db_events(db_call, "integration_offline")) == 1
    second = await make_hub()  # a new worker process: loads the table
    assert second.hub.statuses["home_assistant"].link == "idle"  # its own connection: none yet
    assert second.hub.statuses["home_assistant"].last_error == "timeout"
    second.hub.report("home_assistant", "connecting")
    second.hub.report("home_assistant", "disconnected", error="timeout")
    clock.advance(120)
    await second.settle()
    assert len(await db_events(db_call, "integration_offline")) == 1
    second.hub.report("home_assistant", "connected")
    await second.settle()
    assert len(await db_events(db_call, "integration_recovered")) == 1


async def test_reports_before_the_load_keep_their_outage_flag(
    clock: FakeClock, stores: list[AsyncStore], db_call: Any
) -> None:
    await db_call(
        IntegrationStatusRecord.objects.create,
        integration="mqtt",
        configured=True,
        enabled=True,
        link="disconnected",
        state="offline",
        offline_reported=True,
        sequence=5,
    )
    store_ = AsyncStore()
    stores.append(store_)
    hub = StatusHub(clock, store_.call, publish=Recorder())
    hub.report("mqtt", "connected")  # before run(): the hub has not read the table yet
    running = Running(hub)
    await running.settle()
    assert len(await db_events(db_call, "integration_recovered")) == 1
    await running.stop()


async def test_bad_reports_are_counted_not_raised(make_hub: Make) -> None:
    running = await make_hub()
    hub = running.hub
    hub.report("hue", "connected")
    hub.report("mqtt", "exploded")
    hub.report("mqtt", "disconnected", error=RuntimeError("x"))  # type: ignore[arg-type]
    await running.settle()
    assert hub.rejected == 3 and hub.changes == 0 and hub.writes == 0


async def test_a_failed_write_is_retried_with_the_newest_status(
    make_hub: Make, clock: FakeClock
) -> None:
    running = await make_hub()
    hub, publish = running.hub, running.hub._publish
    db: CountingDb = hub._db  # type: ignore[assignment]
    db.fail_next = 2
    hub.report("mqtt", "connected")
    await running.settle()
    assert hub.writes == 0 and hub.last_error and "away" in hub.last_error
    hub.report("mqtt", "disconnected", error="broker gone")  # applied while the DB is away
    clock.advance(1)
    await running.settle()
    assert hub.writes == 0  # second failure: next try 2 s later
    clock.advance(2)
    await running.settle()
    assert hub.writes == 1
    assert publish.states("mqtt") == ["offline"]  # type: ignore[attr-defined]


async def test_idle_costs_nothing(make_hub: Make, clock: FakeClock) -> None:
    running = await make_hub()
    hub = running.hub
    db: CountingDb = hub._db  # type: ignore[assignment]
    hub.report("mqtt", "connected")
    await running.settle()
    calls, pushes = db.calls, hub.pushes
    assert clock.sleepers == 0  # nothing scheduled: it waits on its wake-up event alone
    clock.advance(24 * 3600)
    await running.settle()
    assert (db.calls, hub.pushes) == (calls, pushes)


def test_one_hub_per_worker() -> None:
    from types import SimpleNamespace

    from services.worker import WorkerContext

    ctx = WorkerContext(
        "w1",
        FakeClock(),
        SimpleNamespace(call=None),  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        [],
    )
    from django.apps import apps

    assert status_hub(ctx) is status_hub(ctx)
    assert status_hub(ctx).name == "status"
    assert status_hub(ctx).worker_id == "w1"
    # the component the runner runs is the hub whose report() the integrations get
    contributed = apps.get_app_config("realtime").worker_components(ctx)  # type: ignore[attr-defined]
    assert contributed == [status_hub(ctx)]


async def test_a_dropped_database_connection_is_replaced(make_hub: Make) -> None:
    from django.db import connection

    running = await make_hub()
    hub = running.hub
    db: CountingDb = hub._db  # type: ignore[assignment]

    def backend_pid() -> int:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            return int(cursor.fetchone()[0])

    def terminate(pid: int) -> None:  # from a connection of its own
        import psycopg

        from tests.acceptance.conftest import database_url

        with psycopg.connect(database_url(), autocommit=True) as other:
            other.execute("SELECT pg_terminate_backend(%s, 5000)", [pid])

    hub.report("mqtt", "connected")
    await running.settle()
    terminate(await db.store.call(backend_pid))
    hub.report("mqtt", "disconnected")  # the pipelined write meets the dead connection
    await running.settle()
    assert hub.writes == 2 and hub.last_error is None
    assert hub._publish.states("mqtt")[-1] == "offline"  # type: ignore[attr-defined]
