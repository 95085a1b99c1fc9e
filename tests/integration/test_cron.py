"""The cron core against real PostgreSQL: claims, catch-up, overlap, timeouts, retries, history."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.db import connection

from services.clock import FakeClock
from services.cron import CronComponent
from services.dbthread import AsyncStore
from services.models import ScheduledJob, TaskRun
from services.registry import Registry, task
from services.schedules import Every
from tests.integration.conftest import START, Running

pytestmark = pytest.mark.django_db(transaction=True)


def runs_of(name: str) -> list[dict[str, Any]]:
    rows = (
        TaskRun.objects.filter(job__name=name)
        .order_by("slot", "id")
        .values("slot", "source", "status", "attempt", "worker_id", "result", "error", "traceback")
    )
    return [dict(row) for row in rows]


@dataclass
class CronBed:
    """What each cron test sets up: a registry, components built over it (one per simulated
    worker, each with its own store), the fake clock, and ORM calls on a store's thread."""

    reg: Registry
    clock: FakeClock
    running: Running
    make_cron: Callable[..., CronComponent]
    stores: list[AsyncStore]

    def cron(self, **kw: Any) -> CronComponent:
        return self.make_cron(self.reg, **kw)

    async def query(self, fn: Callable[..., Any], *args: Any) -> Any:
        if not self.stores:
            self.stores.append(AsyncStore())
        return await self.stores[0].call(fn, *args)

    async def runs(self, name: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = await self.query(runs_of, name)
        return rows

    async def last_slot(self, name: str, slot: datetime, paused: bool = False) -> None:
        """Make ``name``'s job exist with ``slot`` as the last one it ran."""
        await self.query(_job_last_slot, name, slot, paused)


@pytest.fixture
def bed(
    make_cron: Callable[..., CronComponent],
    clock: FakeClock,
    running: Running,
    stores: list[AsyncStore],
) -> CronBed:
    return CronBed(Registry(), clock, running, make_cron, stores)


async def test_every_fires_each_slot_once_with_its_slot_time(bed: CronBed) -> None:
    seen: list[datetime] = []

    @task(Every(10), into=bed.reg)
    async def ten_seconds(slot: datetime) -> str:
        seen.append(slot)
        return slot.isoformat()

    cron = bed.cron()
    bed.running.start(cron)
    await cron.wait_launched(0)
    for n in range(1, 4):
        await _until_sleeping(bed.clock)
        bed.clock.advance(10)
        await cron.wait_launched(n)
        await cron.wait_idle()
    assert seen == [START + timedelta(seconds=10 * n) for n in range(1, 4)]
    rows = await bed.runs("ten_seconds")
    assert [(r["status"], r["source"], r["result"]) for r in rows] == [
        ("success", "scheduled", s.isoformat()) for s in seen
    ]


async def test_two_workers_never_run_a_slot_twice(bed: CronBed) -> None:
    calls: list[datetime] = []

    @task(Every(1), into=bed.reg)
    def every_second(slot: datetime) -> None:
        calls.append(slot)

    crons = [bed.cron(worker=f"w{i}") for i in range(2)]
    for cron in crons:
        bed.running.start(cron)
    for n in range(1, 21):
        await _until_sleeping(bed.clock, sleepers=2)
        bed.clock.advance(1)
        await asyncio.gather(*(c.wait_launched(n) for c in crons))
        await asyncio.gather(*(c.wait_idle() for c in crons))
    rows = await bed.runs("every_second")
    assert len(calls) == len(set(calls)) == len(rows) == 20
    assert {r["worker_id"] for r in rows} <= {"w0", "w1"}


async def test_catch_up_runs_the_latest_missed_slot_once(bed: CronBed) -> None:

    @task(Every(3600), into=bed.reg, catch_up_grace=6 * 3600)
    def hourly(slot: datetime) -> str:
        return slot.isoformat()

    await bed.last_slot("hourly", START - timedelta(hours=5))  # down for 5 h
    cron = bed.cron()
    stopping = asyncio.Event()
    outcomes = await cron.run_once(stopping)
    assert [o.status for o in outcomes if o] == ["success"]
    rows = await bed.runs("hourly")
    assert [(r["slot"], r["source"]) for r in rows] == [(START, "scheduled")]


async def test_catch_up_on_start_is_marked_and_respects_grace(bed: CronBed) -> None:

    @task(Every(3600), into=bed.reg, catch_up_grace=1800)
    def within_grace() -> None: ...

    @task(Every(7200), into=bed.reg, catch_up_grace=1800)
    def beyond_grace() -> None: ...

    bed.clock.advance(600)  # the last hourly slot (12:00) is 10 min old; the 2-hourly one too
    bed.clock.advance(3600)  # now 13:10: 13:00 is 10 min old, 12:00 (2-hourly) 70 min old
    await bed.last_slot("within_grace", START - timedelta(hours=3))
    await bed.last_slot("beyond_grace", START - timedelta(hours=3))
    cron = bed.cron()
    bed.running.start(cron)
    await cron.wait_launched(1)
    await cron.wait_idle()
    rows = await bed.runs("within_grace")
    assert [(r["slot"], r["source"]) for r in rows] == [(START + timedelta(hours=1), "catch_up")]
    assert await bed.runs("beyond_grace") == []


async def test_new_job_does_not_catch_up_slots_from_before_it_existed(bed: CronBed) -> None:

    @task(Every(60), into=bed.reg)
    def brand_new() -> None: ...

    assert await bed.cron().run_once(asyncio.Event()) == []


async def test_overlapping_run_is_skipped_and_recorded(bed: CronBed) -> None:
    release = asyncio.Event()
    started = asyncio.Event()

    @task(Every(1), into=bed.reg)
    async def slow() -> None:
        started.set()
        await release.wait()

    cron = bed.cron()
    bed.running.start(cron)
    await _until_sleeping(bed.clock)
    bed.clock.advance(1)
    await started.wait()
    first = cron.in_flight()
    await _until_sleeping(bed.clock, sleepers=2)  # the loop and the lease renewer
    bed.clock.advance(1)
    await cron.wait_launched(2)
    await asyncio.gather(*(cron.in_flight() - first))  # the second slot's claim: skipped
    release.set()
    await cron.wait_idle()
    rows = await bed.runs("slow")
    assert [r["status"] for r in rows] == ["success", "skipped"]
    assert "previous run still running" in rows[1]["error"]


async def test_timeout_is_recorded_and_a_hung_sync_task_does_not_block_the_loop(
    bed: CronBed,
) -> None:
    hang = threading.Event()

    @task(Every(60), into=bed.reg, timeout=0.2)
    def hung_sync() -> None:
        hang.wait(30)

    @task(Every(60), into=bed.reg, timeout=0.2)
    async def hung_async() -> None:
        await asyncio.Event().wait()

    await bed.last_slot("hung_sync", START - timedelta(minutes=1))
    await bed.last_slot("hung_async", START - timedelta(minutes=1))
    try:
        outcomes = await bed.cron().run_once(asyncio.Event())
    finally:
        hang.set()
    assert sorted(o.status for o in outcomes if o) == ["timeout", "timeout"]
    for name in ("hung_sync", "hung_async"):
        [row] = await bed.runs(name)
        assert row["status"] == "timeout" and "timed out after 0.2s" in row["error"]


async def test_retries_with_backoff_then_success(
    bed: CronBed, caplog: pytest.LogCaptureFixture
) -> None:
    attempts: list[int] = []

    @task(Every(60), into=bed.reg, retries=3, retry_backoff=2, retry_backoff_cap=3)
    def flaky() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise ConnectionError(f"try {len(attempts)}")
        return "ok"

    await bed.last_slot("flaky", START - timedelta(minutes=1))
    cron = bed.cron()
    caplog.set_level(logging.INFO)
    run = asyncio.create_task(cron.run_once(asyncio.Event()))
    for _ in range(2):
        await _until_sleeping(bed.clock, sleepers=2)  # the lease renewer and the retry backoff
        bed.clock.advance(3)
    [outcome] = await run
    assert outcome is not None and (outcome.status, outcome.attempts) == ("success", 3)
    delays = [
        getattr(r, "delay", None) for r in caplog.records if getattr(r, "event", "") == "task.retry"
    ]
    assert delays == [2, 3]  # 2 s, then 4 s capped at 3 s
    [row] = await bed.runs("flaky")
    assert (row["status"], row["attempt"], row["result"]) == ("success", 3, "ok")


async def test_retries_exhausted_record_failure_with_traceback(bed: CronBed) -> None:

    @task(Every(60), into=bed.reg, retries=1, retry_backoff=1)
    def broken() -> None:
        raise ValueError("bad data in row 7")

    await bed.last_slot("broken", START - timedelta(minutes=1))
    run = asyncio.create_task(bed.cron().run_once(asyncio.Event()))
    await _until_sleeping(bed.clock, sleepers=2)  # the lease renewer and the retry backoff
    bed.clock.advance(1)
    await run
    [row] = await bed.runs("broken")
    assert (row["status"], row["attempt"]) == ("failure", 2)
    assert row["error"] == "ValueError: bad data in row 7"
    assert "Traceback" in row["traceback"] and "bad data in row 7" in row["traceback"]


async def test_paused_job_does_not_run(bed: CronBed) -> None:

    @task(Every(60), into=bed.reg)
    def pausable() -> None: ...

    await bed.last_slot("pausable", START - timedelta(minutes=1), True)
    assert await bed.cron().run_once(asyncio.Event()) == [None]
    assert await bed.runs("pausable") == []


async def test_enabled_when_false_skips_without_a_row(bed: CronBed) -> None:

    @task(Every(60), into=bed.reg, enabled_when=lambda: False)
    def not_configured() -> None: ...

    await bed.last_slot("not_configured", START - timedelta(minutes=1))
    assert await bed.cron().run_once(asyncio.Event()) == [None]
    assert await bed.runs("not_configured") == []


async def test_abandoned_run_is_closed_and_the_next_slot_runs(bed: CronBed) -> None:

    @task(Every(60), into=bed.reg)
    def survivor() -> None: ...

    await bed.last_slot("survivor", START - timedelta(minutes=2))
    await bed.query(
        _abandoned_run,
        "survivor",
        START - timedelta(minutes=2),
        START - timedelta(seconds=1),
    )
    outcomes = await bed.cron().run_once(asyncio.Event())
    assert [o.status for o in outcomes if o] == ["success"]
    rows = await bed.runs("survivor")
    assert [r["status"] for r in rows] == ["failure", "success"]
    assert rows[0]["error"].startswith("abandoned")


@contextlib.asynccontextmanager
async def _listening_cron(bed: CronBed) -> AsyncIterator[CronComponent]:
    """A running cron component subscribed to a real listener, which is ready."""
    from services.listener import Listener

    listener = Listener(backoff_base=0.01)
    cron = bed.cron(subscribe=listener.subscribe)
    listen_stop = asyncio.Event()
    listening = asyncio.create_task(listener.run(listen_stop))
    bed.running.start(cron)
    try:
        await asyncio.wait_for(listener.ready.wait(), 5)
        yield cron
    finally:
        listen_stop.set()
        await listening


async def test_run_now_request_is_delivered_by_notify(bed: CronBed) -> None:
    ran = asyncio.Event()

    @task(Every(86400), into=bed.reg)
    async def on_demand() -> None:
        ran.set()

    async with _listening_cron(bed) as cron:
        await _until_sleeping(bed.clock)
        await bed.query(_request_run, "on_demand")
        async with asyncio.timeout(5):
            await ran.wait()
        await cron.wait_idle()
    [row] = await bed.runs("on_demand")
    assert (row["source"], row["status"], row["slot"]) == ("manual", "success", None)


async def test_a_gated_task_keeps_no_slot_while_disabled_and_resumes_on_its_notify(
    bed: CronBed,
) -> None:
    configured, asked, ran = False, [], asyncio.Event()

    def is_configured() -> bool:
        asked.append(configured)
        return configured

    @task(Every(60), into=bed.reg, enabled_when=is_configured, enabled_changes="test_gate")
    async def gated() -> None:
        ran.set()

    async with _listening_cron(bed) as cron:
        await asyncio.wait_for(cron.wait_reviewed(1), 5)  # the listener's first connect
        assert cron.disabled == {"gated"} and cron.health()["next_fire_at"] is None
        bed.clock.advance(600)  # ten slots go by: no slot is kept, so none is claimed

        configured = True
        await bed.query(_notify, "test_gate")
        await asyncio.wait_for(cron.wait_reviewed(2), 5)
        assert cron.disabled == set()
        await _until_sleeping(bed.clock)
        assert cron.health()["next_fire_at"] == (START + timedelta(seconds=660)).isoformat()
        bed.clock.advance(60)
        async with asyncio.timeout(5):
            await ran.wait()
        await cron.wait_idle()
    # asked at start, at the listener's connect, after the notify, and by the one claim
    assert asked == [False, False, True, True]
    [row] = await bed.runs("gated")
    assert (row["source"], row["status"]) == ("scheduled", "success")


def _notify(channel: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_notify(%s, '')", [channel])


async def test_stop_waits_for_a_running_task_and_leaves_nothing_running(bed: CronBed) -> None:
    from services.runner import Runner

    started, release = asyncio.Event(), asyncio.Event()

    @task(Every(1), into=bed.reg)
    async def in_progress() -> str:
        started.set()
        await release.wait()
        return "finished"

    cron = bed.cron()
    runner = Runner([cron], grace=10)
    main = asyncio.create_task(runner.run())
    await _until_sleeping(bed.clock)
    bed.clock.advance(1)
    await started.wait()
    runner.stop()
    asyncio.get_running_loop().call_soon(release.set)
    assert await main == 0
    [row] = await bed.runs("in_progress")
    assert (row["status"], row["result"]) == ("success", "finished")


async def test_grace_exceeded_cancels_and_records_cancellation(bed: CronBed) -> None:
    from services.runner import Runner

    started = asyncio.Event()

    @task(Every(1), into=bed.reg)
    async def never_ends() -> None:
        started.set()
        await asyncio.Event().wait()

    cron = bed.cron()
    runner = Runner([cron], grace=0.1)
    main = asyncio.create_task(runner.run())
    await _until_sleeping(bed.clock)
    bed.clock.advance(1)
    await started.wait()
    runner.stop()
    await main
    [row] = await bed.runs("never_ends")
    assert row["status"] == "failure" and row["error"].startswith("cancelled")


# --- helpers ---------------------------------------------------------------------------------


def _job_last_slot(name: str, last_slot: datetime, paused: bool = False) -> None:
    ScheduledJob.objects.update_or_create(
        name=name, defaults={"last_slot_at": last_slot, "paused": paused}
    )


def _abandoned_run(name: str, slot: datetime, lease_until: datetime) -> None:
    job = ScheduledJob.objects.get(name=name)
    TaskRun.objects.create(
        job=job,
        slot=slot,
        source="scheduled",
        worker_id="dead:1:x",
        status="running",
        started_at=slot,
        lease_until=lease_until,
    )


def _request_run(name: str) -> None:
    ScheduledJob.objects.filter(name=name).update(run_requested_at=START)


async def _until_sleeping(clock: FakeClock, sleepers: int = 1) -> None:
    """Wait until ``sleepers`` coroutines sleep on the fake clock (the loop is between fires)."""
    async with asyncio.timeout(5):
        await clock.wait_for_sleepers(sleepers)


async def test_sync_stores_next_run_and_marks_unregistered_jobs_inactive(bed: CronBed) -> None:

    @task(Every(60), into=bed.reg, description="kept around", tags=("a", "b"))
    def kept() -> None: ...

    await bed.last_slot("removed_from_code", START)
    await bed.cron().run_once(asyncio.Event())
    jobs = await bed.query(_jobs)
    assert jobs["removed_from_code"]["active"] is False
    assert jobs["kept"] == {
        "active": True,
        "next_run_at": START + timedelta(minutes=1),
        "schedule": "every minute",
        "description": "kept around",
        "tags": ["a", "b"],
    }


def _jobs() -> dict[str, dict[str, Any]]:
    rows = ScheduledJob.objects.values(
        "name", "active", "next_run_at", "schedule", "description", "tags"
    )
    return {row["name"]: {k: v for k, v in row.items() if k != "name"} for row in rows}
