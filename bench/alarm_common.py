"""Helpers of the alarm timer benchmarks; not a benchmark itself.

A ``Plan`` says, in seconds from the start of the window, when each of N timers is due, which
10 % are rescheduled mid-way (and to when) and which 10 % are cancelled; every subject
(the worker, the polling loop, APScheduler) gets the same plan. For subjects backed by the
``alarm_pendingaction`` table, the timers are inserted by plain SQL (a delayed ``emit_event``
action each, every column given, like another service would), the mid-way changes are SQL
UPDATEs, and a ``Recorder`` thread LISTENs on ``alarm_timers``: the ``"action <id> cancel"``
notice of a fired row arrives when its transaction commits, so its arrival time is the
committed result. After the window ``collect`` reads the rows and their events: the event's
``timestamp`` (``clock_timestamp()`` as the row is inserted, after the claim) is the action's
start; ``finished_at`` is the worker's clock when it sent the claim (its wake-up).
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg

from bench import common
from bench.outbox_common import MachineLoad

ACTION = {"type": "emit_event", "message": "bench"}

INSERT = """
INSERT INTO alarm_pendingaction
    (rule_id, rule_name, action, fire_at, status, while_armed, created_at, finished_at,
     fired_by, reason, result, error)
SELECT NULL, 'bench', %(action)s::jsonb, due, 'scheduled', false, now(), NULL, '', '', '{}', ''
FROM unnest(%(dues)s::timestamptz[]) WITH ORDINALITY AS t(due, n)
ORDER BY n
RETURNING id
"""

RESCHEDULE = """
UPDATE alarm_pendingaction AS a SET fire_at = v.due
FROM unnest(%(ids)s::bigint[], %(dues)s::timestamptz[]) AS v(id, due)
WHERE a.id = v.id AND a.status = 'scheduled'
"""

CANCEL = """
UPDATE alarm_pendingaction SET status = 'cancelled', reason = 'bench', finished_at = now()
WHERE id = ANY(%(ids)s) AND status = 'scheduled'
"""

COLLECT = """
SELECT a.id, a.status, extract(epoch from a.fire_at)::float8,
       extract(epoch from a.finished_at)::float8, a.fired_by,
       (SELECT array_agg(extract(epoch from e.timestamp)::float8) FROM alarm_alarmevent AS e
        WHERE e.data ->> 'pending_action' = a.id::text)
FROM alarm_pendingaction AS a
"""


@dataclass(frozen=True)
class Plan:
    """Offsets in seconds from the window's start; indexes 0..count-1 name the timers."""

    dues: list[float]
    mid: float
    rescheduled: dict[int, float]  # index -> new offset
    cancelled: list[int]

    @classmethod
    def make(cls, count: int, window: float, seed: int = 4) -> Plan:
        rng = random.Random(seed)
        dues = [rng.uniform(0.0, window) for _ in range(count)]
        mid = window / 2
        later = [i for i, due in enumerate(dues) if due > mid + 1.0]
        rng.shuffle(later)
        tenth = count // 10
        moved = {i: rng.uniform(mid + 1.0, window) for i in later[:tenth]}
        return cls(dues, mid, moved, later[tenth : 2 * tenth])

    def final_dues(self) -> dict[int, float]:
        """The due offset of every timer expected to fire."""
        dues = {i: self.rescheduled.get(i, due) for i, due in enumerate(self.dues)}
        for i in self.cancelled:
            del dues[i]
        return dues

    def to_json(self) -> str:
        return json.dumps(
            {"dues": self.dues, "mid": self.mid, "rescheduled": self.rescheduled,
             "cancelled": self.cancelled}
        )  # fmt: skip

    @classmethod
    def from_json(cls, text: str) -> Plan:
        raw = json.loads(text)
        moved = {int(k): v for k, v in raw["rescheduled"].items()}
        return cls(raw["dues"], raw["mid"], moved, raw["cancelled"])


def at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


class Recorder(threading.Thread):
    """LISTENs on ``alarm_timers``; the first "action <id> cancel" per id is its commit time."""

    def __init__(self, dbname: str) -> None:
        super().__init__(name="bench-recorder", daemon=True)
        self.conn = psycopg.connect(common.db_url(dbname), autocommit=True)
        self.conn.execute("LISTEN alarm_timers")
        self.committed: dict[int, float] = {}
        self.notices = 0
        self._stop = threading.Event()

    def run(self) -> None:
        while not self._stop.is_set():
            for notify in self.conn.notifies(timeout=0.5):
                now = time.time()
                self.notices += 1
                kind, raw_id, what = notify.payload.split()
                if kind == "action" and what == "cancel":
                    self.committed.setdefault(int(raw_id), now)

    def stop(self) -> None:
        self._stop.set()
        self.join(timeout=5)
        self.conn.close()


@dataclass
class TableRun:
    """One subject's run on the pending-action table of ``dbname``."""

    dbname: str
    plan: Plan
    ids: list[int] = field(default_factory=list)
    start: float = 0.0  # epoch of the window's start

    def schedule(self, lead: float) -> None:
        """Insert every timer (one transaction); the window starts ``lead`` s from now."""
        self.start = time.time() + lead
        dues = [at(self.start + due) for due in self.plan.dues]
        with psycopg.connect(common.db_url(self.dbname), autocommit=True) as conn:
            rows = conn.execute(INSERT, {"action": json.dumps(ACTION), "dues": dues}).fetchall()
        self.ids = [row[0] for row in rows]

    def change_mid_way(self) -> None:
        """At the plan's mid-point: reschedule 10 %, cancel 10 % (two transactions)."""
        sleep_until(self.start + self.plan.mid)
        moved = sorted(self.plan.rescheduled.items())
        with psycopg.connect(common.db_url(self.dbname), autocommit=True) as conn:
            conn.execute(
                RESCHEDULE,
                {"ids": [self.ids[i] for i, _ in moved],
                 "dues": [at(self.start + due) for _, due in moved]},
            )  # fmt: skip
            conn.execute(CANCEL, {"ids": [self.ids[i] for i in self.plan.cancelled]})

    def collect(self, recorder: Recorder | None) -> dict[str, Any]:
        with psycopg.connect(common.db_url(self.dbname), autocommit=True) as conn:
            rows = conn.execute(COLLECT).fetchall()
        index = {row_id: n for n, row_id in enumerate(self.ids)}
        expected = {self.ids[i] for i in self.plan.final_dues()}
        records = []
        by_worker: Counter[str] = Counter()
        for row_id, status, fire_at, finished, fired_by, events in rows:
            if row_id not in index or status != "fired":
                continue
            by_worker[fired_by] += 1
            events = events or []
            committed = recorder.committed.get(row_id) if recorder else None
            records.append(
                Record(row_id in expected, fire_at, min(events, default=None), committed,
                       finished, len(events))
            )  # fmt: skip
        fired = {row_id for row_id, status, *_ in rows if status == "fired"}
        result = summarize(records, len(expected), len(expected - fired))
        result["by_worker"] = dict(by_worker)
        return result


@dataclass(frozen=True)
class Record:
    expected: bool
    due: float
    start: float | None
    committed: float | None
    wake: float | None
    runs: int


def summarize(records: list[Record], expected: int, missed: int) -> dict[str, Any]:
    """Lateness in ms (start, committed, wake-up), early, duplicates, missed, unexpected."""

    def late(values: list[float | None], due: list[float]) -> list[float]:
        return [(v - d) * 1000 for v, d in zip(values, due, strict=True) if v is not None]

    dues = [r.due for r in records]
    start = late([r.start for r in records], dues)
    committed = late([r.committed for r in records], dues)
    wake = late([r.wake for r in records], dues)
    return {
        "expected": expected,
        "fired": len(records),
        "missed": missed,
        "unexpected": sum(1 for r in records if not r.expected),
        "duplicates": sum(max(r.runs - 1, 0) for r in records),
        "early": sum(1 for v in start if v < 0) + sum(1 for v in committed if v < 0),
        "start": stats(start),
        "committed": stats(committed) if committed else None,
        "wake": stats(wake) if wake else None,
    }


def stats(values: list[float]) -> dict[str, float]:
    return {
        "p50": common.percentile(values, 50),
        "p99": common.percentile(values, 99),
        "max": max(values, default=float("nan")),
        "n": len(values),
    }


def sleep_until(epoch: float) -> None:
    while (left := epoch - time.time()) > 0:
        time.sleep(min(left, 0.5))


def worker_env(dbname: str, port: int, **extra: str) -> dict[str, str]:
    """A benchmarked worker: WARNING logs (INFO logs every batch of fired timers)."""
    return common.django_env(
        common.db_url(dbname), WORKER_HEALTH_PORT=str(port), LOG_LEVEL="WARNING", **extra
    )


def timers_health(port: int) -> dict[str, Any]:
    return dict(common.healthz(port).get("components", {}).get("alarm_timers", {}))


def wait_timers_ready(child: common.Child, port: int, timeout: float = 60.0) -> None:
    """Poll /healthz until the timer component has loaded the tables once."""

    def loaded(health: dict[str, Any]) -> bool:
        return bool(health.get("components", {}).get("alarm_timers", {}).get("loads", 0) >= 1)

    common.wait_health(child, port, loaded, "timers", timeout)


def run_on_table(
    dbname: str, plan: Plan, lead: float, children: list[common.Child], *,
    record: bool = True, tail: float = 0.0,
) -> dict[str, Any]:  # fmt: skip
    """Run ``plan`` on the pending-action table that ``children`` serve (they are stopped at
    the end): schedule it ``lead`` s ahead, change 20 % mid-way, wait until ``tail`` s after
    the last due time (plus 3 s), collect. CPU is the children's together."""
    recorder = Recorder(dbname) if record else None
    try:
        if recorder:
            recorder.start()
        run = TableRun(dbname, plan)
        run.schedule(lead)
        load = MachineLoad()
        cpu_before = [common.cpu_seconds(child.pid) for child in children]
        changer = threading.Thread(target=run.change_mid_way, daemon=True)
        changer.start()
        sleep_until(run.start + max(plan.dues) + 3.0 + tail)
        changer.join()
        cpu = sum(common.cpu_seconds(c.pid) - b for c, b in zip(children, cpu_before, strict=True))
        result = run.collect(recorder)
        result.update(cpu=cpu, machine=load.finish())
        return result
    finally:
        if recorder:
            recorder.stop()
        for child in children:
            child.stop()


def baseline_child(dbname: str, mode: str, *args: str) -> common.Child:
    """``bench/alarm_baselines.py MODE DBNAME ARGS...``, once it says it is ready."""
    argv = [common.PYTHON, "bench/alarm_baselines.py", mode, dbname, *args]
    child = common.Child(argv, common.django_env(common.db_url(dbname)), label=mode)
    child.wait_for(f"{mode} ready", 30)
    return child


def spawn_worker(dbname: str, label: str) -> tuple[common.Child, int]:
    port = common.free_port()
    args = [*common.worker_args(), "--only", "alarm_timers"]
    child = common.Child(args, worker_env(dbname, port), label=label)
    wait_timers_ready(child, port)
    return child, port


def fmt_stats(s: dict[str, float] | None) -> str:
    if not s:
        return "-"
    return f"{s['p50']:.2f} / {s['p99']:.2f} / {s['max']:.2f}"


if __name__ == "__main__":
    print("bench/alarm_common.py holds helpers of the alarm timer benchmarks; it measures nothing.")
