"""Cron lateness of ``manage.py runworker`` beside 1 s and 5 s polling loops.

What it measures: a worker runs for ``--seconds`` (default 60) on a real PostgreSQL with the
tasks of ``bench/lateness_tasks.py`` (``Every(1)`` sync and async, and 6-field cron jobs every
1, 2 and 5 s; loaded with ``WORKER_TASK_MODULES=bench.lateness_tasks``) besides the real daily
ones. Each task records ``time.time() - slot.timestamp()`` as it starts. From those records and
the TaskRun rows it prints, per task and overall: runs, expected slots in the window,
duplicates, missed slots, and p50/p99/max lateness in ms, both at the task function's start
and at the claim (``TaskRun.started_at - slot``: when the worker's timer fired).

Baseline, in the same run: polling loops that ask "due?" every 1 s and every 5 s, for the same
schedules: two real loops in threads of this process during the same window (one phase
each), and a simulation over the worker's expected slots with 200 uniformly random poll phases
(lateness uniform in [0, interval)). "missed" for a poller counts slots a loop that runs a task
once per check would merge with a later slot of the same task.

Run: ``.venv/bin/python bench/cron_lateness.py`` (60 s), ``--seconds 15`` for a quick run.
Needs PostgreSQL at ``BENCH_PG_URL``; creates and drops ``bench_lateness_<pid>``.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common
from bench.lateness_tasks import TASKS, schedule_of

DB = common.run_name("bench_lateness")
MARGIN = 1.0  # slots in the last second of the window are not expected to have run yet


@dataclass
class Series:
    """Lateness samples (seconds) of one system, and its slot bookkeeping."""

    label: str
    lateness: list[float] = field(default_factory=list)
    runs: int = 0
    expected: int = 0
    duplicates: int = 0
    missed: int = 0

    def row(self) -> list[object]:
        ms = [v * 1000 for v in self.lateness]
        pct = (f"{common.percentile(ms, p):.1f}" for p in (50, 99, 100))
        return [self.label, self.runs, self.expected, self.duplicates, self.missed, *pct]


def expected_slots(spec: str, start: float, end: float) -> list[float]:
    """Slot epochs of ``spec`` in (start, end]."""
    schedule = schedule_of(spec)
    slots = []
    slot = schedule.next_slot(datetime.fromtimestamp(start, UTC))
    while slot is not None and slot.timestamp() <= end:
        slots.append(slot.timestamp())
        slot = schedule.next_slot(slot)
    return slots


class PollingLoop(threading.Thread):
    """Every ``interval`` s: is any task's next slot due? Records now - slot for each due one."""

    def __init__(self, interval: float, stop: threading.Event) -> None:
        super().__init__(name=f"poll-{interval:g}s", daemon=True)
        self.interval = interval
        self.stop = stop
        self.window = (0.0, 0.0)
        self.records: list[tuple[str, float, float]] = []  # (task, slot, poll time)

    def run(self) -> None:
        start = time.time()
        schedules = {name: schedule_of(spec) for name, (spec, _) in TASKS.items()}
        due = {n: s.next_slot(datetime.fromtimestamp(start, UTC)) for n, s in schedules.items()}
        while not self.stop.wait(self.interval):
            now = time.time()
            moment = datetime.fromtimestamp(now, UTC)
            for name, schedule in schedules.items():
                while (slot := due[name]) is not None and slot <= moment:
                    self.records.append((name, slot.timestamp(), now))
                    due[name] = schedule.next_slot(slot)
        self.window = (start, time.time())


def poller_series(label: str, records: list[tuple[str, float, float]]) -> Series:
    series = Series(label)
    per_poll = Counter((name, poll) for name, _, poll in records)
    series.lateness = [poll - slot for _, slot, poll in records]
    series.runs = len(per_poll)  # a "due?" loop runs a task once per check
    series.expected = len(records)
    series.missed = len(records) - len(per_poll)
    return series


def simulated(interval: float, slots: dict[str, list[float]], phases: int) -> Series:
    rng = random.Random(interval)
    records: list[tuple[str, float, float]] = []
    for n in range(phases):
        phase = rng.uniform(0, interval)
        for name, epochs in slots.items():
            for slot in epochs:
                poll = phase + math.ceil((slot - phase) / interval) * interval
                records.append((f"{name}#{n}", slot, poll))
    series = poller_series(f"{interval:g} s polling loop (simulated, {phases} phases)", records)
    series.runs, series.expected, series.missed = (
        round(series.runs / phases),
        round(series.expected / phases),
        round(series.missed / phases),
    )
    return series


def read_records(path: Path) -> list[tuple[str, float, float]]:
    records = []
    for line in path.read_text(encoding="ascii").splitlines():
        name, slot, late = line.split()
        records.append((name, float(slot), float(late)))
    return records


def read_runs() -> list[tuple[str, float, float, str, Any]]:
    with common.admin(dbname=DB) as conn:
        rows = conn.execute(
            "SELECT j.name, extract(epoch FROM r.slot)::float8,"
            " extract(epoch FROM r.started_at)::float8, r.status, r.result"
            " FROM services_taskrun r JOIN services_scheduledjob j ON j.id = r.job_id"
            " WHERE j.name LIKE 'bench\\_%%' AND r.slot IS NOT NULL"
        ).fetchall()
    return [(n, s, st, status, result) for n, s, st, status, result in rows]


def worker_series(
    records: list[tuple[str, float, float]], slots: dict[str, list[float]], start: float
) -> tuple[Series, list[Series]]:
    total = Series("runworker: task function starts")
    per_task = []
    by_task: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for name, slot, late in records:
        if slot > start:
            by_task[name].append((slot, late))
    for name, (spec, on_loop) in TASKS.items():
        got = by_task.get(name, [])
        counts = Counter(slot for slot, _ in got)
        series = Series(f"  {name} ({spec}, {'async' if on_loop else 'sync'})")
        series.lateness = [late for _, late in got]
        series.runs = len(got)
        series.expected = len(slots[name])
        series.duplicates = sum(c - 1 for c in counts.values())
        series.missed = len(set(slots[name]) - set(counts))
        per_task.append(series)
        for attr in ("runs", "expected", "duplicates", "missed"):
            setattr(total, attr, getattr(total, attr) + getattr(series, attr))
        total.lateness += series.lateness
    return total, per_task


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="measured window")
    parser.add_argument("--port", type=int, default=0, help="worker /healthz port; 0: a free one")
    parser.add_argument("--phases", type=int, default=200, help="simulated poll phases")
    parser.add_argument("--keep-databases", action="store_true")
    args = parser.parse_args()

    args.port = args.port or common.free_port()
    print(f"preparing {DB} ...", flush=True)
    common.migrated_database(DB)
    workdir = Path(tempfile.mkdtemp(prefix="bench-lateness-"))
    out = workdir / "lateness.txt"
    stop_polls = threading.Event()
    polls = [PollingLoop(1.0, stop_polls), PollingLoop(5.0, stop_polls)]
    worker: common.Child | None = None
    try:
        env = common.django_env(
            common.db_url(DB),
            WORKER_HEALTH_PORT=str(args.port),
            WORKER_TASK_MODULES="bench.lateness_tasks",
            BENCH_LATENESS_FILE=str(out),
        )
        worker = common.Child(common.worker_args(), env, label="runworker")
        ready_at = worker.wait_for("event=cron.ready", timeout=60)
        start = time.time() - (time.perf_counter() - ready_at)
        for poll in polls:
            poll.start()
        cpu0, t0 = common.cpu_seconds(worker.pid), time.perf_counter()
        print(f"worker ready; measuring for {args.seconds:g} s ...", flush=True)
        time.sleep(args.seconds)
        cpu_pct = 100 * (common.cpu_seconds(worker.pid) - cpu0) / (time.perf_counter() - t0)
        end = time.time() - MARGIN
        stop_polls.set()
        worker.stop()
        for poll in polls:
            poll.join(timeout=10)
        errors = [
            line
            for line in worker.lines_between(0, math.inf)
            if " ERROR " in line or " WARNING " in line
        ]

        slots = {name: expected_slots(spec, start, end) for name, (spec, _) in TASKS.items()}
        total, per_task = worker_series(read_records(out) if out.exists() else [], slots, start)
        runs = [r for r in read_runs() if start < r[1]]
        claim = Series("runworker: claims (TaskRun.started_at - slot)")
        claim.lateness = [started - slot for _, slot, started, _, _ in runs]
        claim.runs = len(runs)
        claim.expected = total.expected
        claim.duplicates = sum(c - 1 for c in Counter((n, s) for n, s, *_ in runs).values())
        claim.missed = len({(n, s) for n, ss in slots.items() for s in ss} - {r[:2] for r in runs})
        statuses = Counter(status for *_, status, _ in runs)

        rows = [total.row(), claim.row()]
        for poll in polls:
            recs = [r for r in poll.records if poll.window[0] < r[1] <= end]
            rows.append(poller_series(f"{poll.interval:g} s polling loop (measured)", recs).row())
        for interval in (1.0, 5.0):
            rows.append(simulated(interval, slots, args.phases).row())
        rows.append(["goal", "one per slot", "", 0, 0, "", "< 50", ""])
        headers = ["system", "runs", "expected", "dup", "missed", "p50 ms", "p99 ms", "max ms"]
        print(f"\nCron lateness over {args.seconds:g} s, {len(TASKS)} bench tasks")
        print(common.table(headers, rows))
        print("\nrunworker per task (function start):")
        print(common.table(headers, [s.row() for s in per_task]))
        print(
            f"\nTaskRun statuses: {dict(statuses)}; worker CPU during the window: {cpu_pct:.1f} %"
        )
        if errors:
            print(f"{len(errors)} WARNING/ERROR lines from the worker, first ones:")
            for line in errors[:5]:
                print(f"  {line[:200]}")
    finally:
        stop_polls.set()
        if worker is not None:
            worker.stop()
        out.unlink(missing_ok=True)
        workdir.rmdir()
        if not args.keep_databases:
            common.drop_database(DB)


if __name__ == "__main__":
    main()
