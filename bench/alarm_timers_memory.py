"""100,000 pending alarm timers: the worker's memory and the cost of a schedule and a cancel.

What it measures, in one run:

* the worker (``manage.py runworker --only alarm_timers``, WARNING logs) on a fresh database:
  its RSS before and after ``--count`` (100,000) pending actions due in an hour are inserted
  by plain SQL in one transaction (every one reaches the heap by NOTIFY; /healthz says when
  all are there), the worker's CPU per schedule (reading the notice from libpq, parsing it,
  the heap) and the same for cancelling them all (one UPDATE, one notice each); then a new
  worker started on ``--count`` scheduled rows: time to load them and its RSS beside a worker
  started on empty tables;
* in-process, for the same count, the pure structure alone (``alarm.timer_policy.Schedule``
  over ``services.timers.TimerHeap``): RSS growth and time per schedule / cancel, with and
  without parsing the NOTIFY payload;
* baselines in processes of their own: APScheduler 3's in-memory scheduler (``add_job`` /
  ``remove_job``; ``pip install 'apscheduler<4'``, n/a otherwise) and a bare ``heapq`` of
  tuples plus a dict (the floor of any Python timer heap).

Goals: <= 60 MB RSS growth, <= 50 us per schedule / cancel.

Run: ``.venv/bin/python bench/alarm_timers_memory.py`` (~1-2 min); ``--count 20000`` for a quick
run. Needs PostgreSQL at ``BENCH_PG_URL``; creates and drops ``bench_alarm_memory_<pid>``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg

from bench import alarm_common as ac
from bench import common
from bench.outbox_common import machine_line

DB = common.run_name("bench_alarm_memory")
CANCEL_ALL = "UPDATE alarm_pendingaction SET status = 'cancelled' WHERE status = 'scheduled'"


def rss_mib(pid: int) -> float:
    import psutil

    return float(psutil.Process(pid).memory_info().rss) / 2**20


def wait_heap(port: int, count: int, timeout: float = 300.0) -> float:
    began = time.perf_counter()
    while ac.timers_health(port).get("timers") != count:
        if time.perf_counter() - began > timeout:
            raise TimeoutError(f"the heap never held {count} timers")
        time.sleep(0.05)
    return time.perf_counter() - began


def insert(count: int) -> None:
    due = datetime.now(UTC) + timedelta(hours=1)
    dues = [due + timedelta(milliseconds=i) for i in range(count)]
    with psycopg.connect(common.db_url(DB), autocommit=True) as conn:
        conn.execute(ac.INSERT, {"action": json.dumps(ac.ACTION), "dues": dues})


def worker_figures(count: int) -> dict[str, Any]:
    child, port = ac.spawn_worker(DB, "worker")
    try:
        time.sleep(2.0)  # settle after start-up
        rss0, cpu0 = rss_mib(child.pid), common.cpu_seconds(child.pid)
        began = time.perf_counter()
        insert(count)
        inserted = time.perf_counter() - began
        on_heap = wait_heap(port, count)
        cpu1 = common.cpu_seconds(child.pid)
        time.sleep(2.0)
        rss1 = rss_mib(child.pid)
        with psycopg.connect(common.db_url(DB), autocommit=True) as conn:
            conn.execute(CANCEL_ALL)
        off_heap = wait_heap(port, 0)
        cpu2 = common.cpu_seconds(child.pid)
        rss2 = rss_mib(child.pid)
    finally:
        child.stop()
    return {
        "rss_mib": rss1 - rss0,
        "rss_after_cancel": rss2 - rss0,
        "schedule_us": (cpu1 - cpu0) / count * 1e6,
        "cancel_us": (cpu2 - cpu1) / count * 1e6,
        "insert_s": inserted,
        "heap_s": on_heap,
        "cancel_s": off_heap,
    }


def start_figures(count: int) -> dict[str, Any]:
    """A worker started on an empty table, then one started on ``count`` scheduled rows."""
    empty, _ = ac.spawn_worker(DB, "empty")
    time.sleep(2.0)
    rss_empty = rss_mib(empty.pid)
    empty.stop()
    insert(count)
    began = time.perf_counter()
    loaded, port = ac.spawn_worker(DB, "loaded")
    try:
        wait_heap(port, count)
        ready = time.perf_counter() - began
        time.sleep(2.0)
        rss_loaded = rss_mib(loaded.pid)
    finally:
        loaded.stop()
    return {"start_s": ready, "rss_mib": rss_loaded - rss_empty}


def own_rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def child_schedule(count: int, parse: bool) -> dict[str, float]:
    """The pure structure in this (child) process: Schedule over TimerHeap."""
    from alarm import timer_policy
    from alarm.timer_policy import Schedule

    base = datetime.now(UTC) + timedelta(hours=1)
    payloads = [timer_policy.payload("action", i, base + timedelta(milliseconds=i))
                for i in range(count)]  # fmt: skip
    notices = [timer_policy.parse(p) for p in payloads] if not parse else []
    gc.collect()
    before = own_rss_mib()
    schedule = Schedule()
    now, mono = datetime.now(UTC), time.monotonic()
    began = time.perf_counter()
    if parse:
        for text in payloads:
            notice = timer_policy.parse(text)
            assert notice.due is not None
            schedule.set(notice.key, notice.due, now, mono)
    else:
        for notice in notices:
            assert notice.due is not None
            schedule.set(notice.key, notice.due, now, mono)
    added = time.perf_counter() - began
    gc.collect()
    grown = own_rss_mib() - before
    began = time.perf_counter()
    for i in range(count):
        schedule.cancel(("action", i))
    cancelled = time.perf_counter() - began
    return {"rss_mib": grown, "schedule_us": added / count * 1e6,
            "cancel_us": cancelled / count * 1e6}  # fmt: skip


def in_child(*args: str) -> dict[str, Any]:
    done = subprocess.run(
        [common.PYTHON, *args], cwd=common.ROOT, capture_output=True, text=True, timeout=600,
        env=common.django_env(common.db_url(DB)),
    )  # fmt: skip
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()
        if any("No module named 'apscheduler'" in line for line in tail):
            return {"unavailable": "pip install 'apscheduler<4'"}
        return {"error": tail[-1] if tail else f"exit {done.returncode}"}
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def fmt(result: dict[str, Any], key: str, unit: str) -> str:
    if "unavailable" in result:
        return f"n/a ({result['unavailable']})"
    if "error" in result:
        return f"error ({result['error']})"
    return f"{result[key]:.1f} {unit}" if key in result else "-"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--child", choices=["schedule", "schedule-parse"], help=argparse.SUPPRESS)
    parser.add_argument("--keep-databases", action="store_true")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child_schedule(args.count, args.child == "schedule-parse")))
        return 0
    print(f"{args.count} pending timers. {machine_line()}")
    common.migrated_database(DB)
    try:
        worker = worker_figures(args.count)
        started = start_figures(args.count)
    finally:
        if not args.keep_databases:
            common.drop_database(DB)
    me = str(Path(__file__).resolve())
    baselines = "bench/alarm_baselines.py"
    results = {
        "worker (via NOTIFY, CPU)": worker,
        "Schedule alone": in_child(me, "--child", "schedule", "--count", str(args.count)),
        "Schedule + parse": in_child(me, "--child", "schedule-parse", "--count", str(args.count)),
        "APScheduler 3": in_child(baselines, "rss-apscheduler", str(args.count)),
        "heapq + dict": in_child(baselines, "rss-heapq", str(args.count)),
    }
    body = [
        [label, fmt(r, "rss_mib", "MiB"), fmt(r, "schedule_us", "us"), fmt(r, "cancel_us", "us")]
        for label, r in results.items()
    ]
    print()
    print(common.table(["", "RSS growth", "per schedule", "per cancel"], body))
    print("goal: <= 60 MB, <= 50 us")
    print(
        f"\nworker: INSERT of {args.count} took {worker['insert_s']:.2f} s; all on the heap "
        f"{worker['heap_s']:.2f} s after its commit; all off it {worker['cancel_s']:.2f} s after "
        f"the cancelling UPDATE; RSS after cancelling them all: "
        f"{worker['rss_after_cancel']:+.1f} MiB.\n"
        f"a worker started on {args.count} scheduled rows had them on its heap "
        f"{started['start_s']:.2f} s after spawn, RSS {started['rss_mib']:+.1f} MiB beside one "
        f"started on an empty table."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
