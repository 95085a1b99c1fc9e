"""The baselines of the alarm timer benchmarks, each run as a process of its own.

``python bench/alarm_baselines.py apscheduler DBNAME PLAN START OUT``: APScheduler 3's
in-memory ``AsyncIOScheduler`` (never a project dependency: ``pip install 'apscheduler<4'``)
gets one date job per timer of the plan (file ``PLAN``, offsets from the epoch ``START``),
reschedules 10 % and removes 10 % at the plan's mid-point, like the worker's table gets. Each
job does the same durable effect as the worker's fast path: INSERT an alarm event on one
autocommit psycopg connection. It writes ``[index, due, start, committed]`` per run to ``OUT``.

``python bench/alarm_baselines.py poll DBNAME INTERVAL``: the old design, a loop that every
``INTERVAL`` seconds fires every due pending action in one statement (the worker's own
FIRE_ACTIONS shape with ``now()``), until SIGTERM.

``python bench/alarm_baselines.py floor DBNAME``: the physical floor of a durable timer here, a
bare loop with none of the worker's bookkeeping: it LISTENs on ``alarm_timers`` (the table's
own trigger), keeps a ``heapq``, sleeps with ``asyncio`` until the earliest due time and fires
the due rows with one minimal UPDATE + INSERT on one connection (no lock order, no verdicts,
no stale policy, no precise wake-up), until SIGTERM. What it measures is what this machine's
PostgreSQL round trip and wake-ups cost any durable timer.

``python bench/alarm_baselines.py rss-apscheduler COUNT`` / ``rss-heapq COUNT``: RSS growth
(MiB) and time per add / remove (us) for COUNT pending timers; prints one JSON line.
"""

from __future__ import annotations

import asyncio
import gc
import heapq
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg

from bench import common
from bench.alarm_common import Plan, at

EVENT = """
INSERT INTO alarm_alarmevent (event_type, state_from, state_to, message, data, timestamp)
VALUES ('rule_fired', '', '', 'bench', jsonb_build_object('index', %(i)s::int), clock_timestamp())
"""

POLL = """
WITH due AS (
    SELECT id, action FROM alarm_pendingaction
    WHERE status = 'scheduled' AND fire_at <= now() ORDER BY id FOR UPDATE
), done AS (
    UPDATE alarm_pendingaction AS p SET status = 'fired', finished_at = now(), fired_by = 'poll'
    FROM due WHERE p.id = due.id RETURNING p.id
)
INSERT INTO alarm_alarmevent (event_type, state_from, state_to, message, data, timestamp)
SELECT 'rule_fired', '', '', due.action ->> 'message',
       jsonb_build_object('pending_action', due.id), clock_timestamp()
FROM due
"""


FLOOR_FIRE = """
WITH done AS (
    UPDATE alarm_pendingaction SET status = 'fired', finished_at = %(now)s, fired_by = 'floor'
    WHERE id = ANY(%(ids)s::bigint[]) AND status = 'scheduled' AND fire_at <= %(now)s
    RETURNING id, action
)
INSERT INTO alarm_alarmevent (event_type, state_from, state_to, message, data, timestamp)
SELECT 'rule_fired', '', '', done.action ->> 'message',
       jsonb_build_object('pending_action', done.id), clock_timestamp()
FROM done
"""


def rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


async def apscheduler_run(dbname: str, plan: Plan, start: float, out: Path) -> None:
    from apscheduler.schedulers.asyncio import AsyncIOScheduler
    from apscheduler.triggers.date import DateTrigger

    conn = await psycopg.AsyncConnection.connect(common.db_url(dbname), autocommit=True)
    runs: list[list[float]] = []

    async def job(index: int, due: float) -> None:
        began = time.time()
        await conn.execute(EVENT, {"i": index})
        runs.append([index, due, began, time.time()])

    scheduler = AsyncIOScheduler()
    scheduler.start()
    for index, offset in enumerate(plan.dues):
        due = start + offset
        scheduler.add_job(
            job, DateTrigger(run_date=at(due)), args=[index, due], id=str(index),
            misfire_grace_time=None, coalesce=False,
        )  # fmt: skip
    await asyncio.sleep(max(start + plan.mid - time.time(), 0))
    for index, offset in plan.rescheduled.items():
        due = start + offset
        scheduler.modify_job(str(index), args=[index, due])
        scheduler.reschedule_job(str(index), trigger=DateTrigger(run_date=at(due)))
    for index in plan.cancelled:
        scheduler.remove_job(str(index))
    await asyncio.sleep(max(start + max(plan.dues) + 3.0 - time.time(), 0))
    scheduler.shutdown(wait=False)
    await conn.close()
    await asyncio.to_thread(out.write_text, json.dumps(runs))


def poll(dbname: str, interval: float) -> None:
    stop = False

    def on_term(*_: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    with psycopg.connect(common.db_url(dbname), autocommit=True) as conn:
        print("poll ready", flush=True)
        while not stop:
            conn.execute(POLL)
            deadline = time.monotonic() + interval
            while not stop and time.monotonic() < deadline:
                time.sleep(0.05)


async def floor(dbname: str) -> None:
    """The bare durable loop (see the module docstring)."""
    url = common.db_url(dbname)
    listen = await psycopg.AsyncConnection.connect(url, autocommit=True)
    claim = await psycopg.AsyncConnection.connect(url, autocommit=True)
    await listen.execute("LISTEN alarm_timers")
    heap: list[tuple[float, int]] = []
    due_of: dict[int, float] = {}  # the live due time per id; stale heap entries are skipped
    changed, stopping = asyncio.Event(), asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)

    async def notices() -> None:
        async for notice in listen.notifies():
            kind, raw_id, raw_due = notice.payload.split()
            if kind != "action":
                continue
            if raw_due == "cancel":
                due_of.pop(int(raw_id), None)
            else:
                due_of[int(raw_id)] = float(raw_due)
                heapq.heappush(heap, (float(raw_due), int(raw_id)))
            changed.set()

    reader = asyncio.create_task(notices())
    print("floor ready", flush=True)
    while not stopping.is_set():
        changed.clear()
        now = time.time()
        ids = []
        while heap and heap[0][0] <= now:
            due, row_id = heapq.heappop(heap)
            if due_of.get(row_id) == due:
                del due_of[row_id]
                ids.append(row_id)
        if ids:
            await claim.execute(FLOOR_FIRE, {"ids": ids, "now": at(now)})
            continue
        timeout = heap[0][0] - time.time() if heap else None
        waiters = [asyncio.ensure_future(changed.wait()), asyncio.ensure_future(stopping.wait())]
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        for waiter in waiters:
            waiter.cancel()
    reader.cancel()
    await listen.close()
    await claim.close()


def rss_apscheduler(count: int) -> dict[str, float]:
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.triggers.date import DateTrigger

    def job() -> None:
        pass

    scheduler = BackgroundScheduler()
    scheduler.start(paused=True)
    base = time.time() + 3600
    gc.collect()
    before = rss_mib()
    began = time.perf_counter()
    for i in range(count):
        scheduler.add_job(job, DateTrigger(run_date=at(base + i * 0.01)), id=str(i))
    added = time.perf_counter() - began
    gc.collect()
    grown = rss_mib() - before
    began = time.perf_counter()
    for i in range(0, count, 10):
        scheduler.remove_job(str(i))
    removed = time.perf_counter() - began
    scheduler.shutdown(wait=False)
    return {"rss_mib": grown, "schedule_us": added / count * 1e6,
            "cancel_us": removed / (count / 10) * 1e6}  # fmt: skip


def rss_heapq(count: int) -> dict[str, float]:
    """A bare heapq of (due, key) tuples and a dict: the floor of any Python timer heap."""
    gc.collect()
    before = rss_mib()
    heap: list[tuple[float, tuple[str, int]]] = []
    live: dict[tuple[str, int], float] = {}
    base = time.time() + 3600
    began = time.perf_counter()
    for i in range(count):
        key = ("action", i)
        live[key] = base + i * 0.01
        heapq.heappush(heap, (base + i * 0.01, key))
    added = time.perf_counter() - began
    gc.collect()
    grown = rss_mib() - before
    began = time.perf_counter()
    for i in range(0, count, 10):
        del live[("action", i)]  # lazy deletion, as the project's heap does
    removed = time.perf_counter() - began
    return {"rss_mib": grown, "schedule_us": added / count * 1e6,
            "cancel_us": removed / (count / 10) * 1e6}  # fmt: skip


def main(argv: list[str]) -> int:
    if not argv:
        print("bench/alarm_baselines.py runs the baselines of the alarm timer benchmarks when "
              "they ask; it measures nothing by itself.")  # fmt: skip
        return 0
    mode, *rest = argv
    if mode == "apscheduler":
        dbname, plan_file, start, out = rest
        plan = Plan.from_json(Path(plan_file).read_text())
        asyncio.run(apscheduler_run(dbname, plan, float(start), Path(out)))
    elif mode == "poll":
        poll(rest[0], float(rest[1]))
    elif mode == "floor":
        asyncio.run(floor(rest[0]))
    elif mode == "rss-apscheduler":
        print(json.dumps(rss_apscheduler(int(rest[0]))))
    elif mode == "rss-heapq":
        print(json.dumps(rss_heapq(int(rest[0]))))
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
