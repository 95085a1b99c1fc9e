"""Idle cost of ``manage.py runworker`` beside a 5 s polling loop, on a real PostgreSQL.

What it measures: the worker runs with ALL its components (cron with the real registered tasks
only, the daily cleanups, nothing due during the window; the LISTEN connection; the
notification outbox) in a database of its own, ``bench_idle_worker``. Unless
``--no-future-delivery``, that database holds one webhook provider and one pending delivery
due in an hour, so the outbox sleeps on a timer, not on an empty table. Readiness: the
``cron.ready`` line and ``/healthz`` showing the outbox LISTENing and drained. At the
same time, in ``bench_idle_poll``, a baseline process does what the old scheduler did: every
``--interval`` seconds it opens a new connection, runs ``SELECT ... FROM services_taskrun WHERE
status = 'running' LIMIT 10``, closes the connection and logs one INFO line. After both are
ready (the worker's ``cron.ready`` line) and ``--settle`` seconds more (PostgreSQL 15 publishes an
idle backend's counters up to 10 s late), both are measured over the same ``--seconds`` window:

* SQL transactions: ``pg_stat_database`` xact_commit + xact_rollback delta of the process's own
  database (nobody else connects to it; the sampler reads from ``postgres``);
* statements on held connections: ``pg_stat_activity`` is sampled every ``--sample`` s; any
  ``query_start`` of a connection already open at the start that moves is a statement;
* new connections: ``pg_stat_database.sessions`` delta, and connections held (max sampled);
* CPU %: psutil user+system of the process (all threads) over wall time;
* log lines written during the window (stdout+stderr, INFO level);
* wake-ups: voluntary + involuntary context switches summed over ``/proc/<pid>/task/*/status``;
* the worker's held connections by ``application_name`` (expected 7: the ORM's bookkeeping
  connection, ``alarm-worker-listener``, two ``alarm-worker-outbox`` (claims and results),
  two ``alarm-worker-timers`` (``ALARM_TIMER_LANES``) and the integrations'
  ``alarm-leader <worker id>``, idle in its advisory lock) with their last statement,
  and the outbox's ``drains`` counter from ``/healthz`` before and after the window (read
  outside it).

Run: ``.venv/bin/python bench/idle_cost.py`` (120 s), ``--seconds 20`` for a quick run.
Needs PostgreSQL at ``BENCH_PG_URL`` (default postgresql://postgres@127.0.0.1:5432); creates
and drops its two ``bench_idle_*_<pid>`` databases; the worker's /healthz uses ``--port``
(a free one by default).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common
from bench.outbox_common import outbox_ready

WORKER_DB = common.run_name("bench_idle_worker")
POLL_DB = common.run_name("bench_idle_poll")


# --- the baseline: the old way, a polling loop -----------------------------------------------


def run_poller(interval: float) -> None:
    """Every ``interval`` s: new connection, the 'anything running?' query, close, log a line."""
    import django

    django.setup()
    from django.db import connection

    from services.models import TaskRun

    logger = logging.getLogger("bench.poller")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    logger.info("poller ready", extra={"event": "poller.ready"})
    while not stop.is_set():
        running = list(
            TaskRun.objects.filter(status=TaskRun.Status.RUNNING).values_list("pk", "job_id")[:10]
        )
        connection.close()  # the old scheduler closed its connection after every run
        logger.info("polled", extra={"event": "poller.polled", "running": len(running)})
        stop.wait(interval)


# --- the outbox's state ---------------------------------------------------------------------

SEED_FUTURE_DELIVERY = """
WITH provider AS (
    INSERT INTO notifications_notificationprovider
        (name, type, enabled, config, created_at, updated_at)
    VALUES ('bench-idle', 'webhook', true, '{"url": "http://127.0.0.1:9/idle"}', now(), now())
    RETURNING id
)
INSERT INTO notifications_notificationdelivery
    (provider_id, title, message, data, status, attempts, max_attempts, next_attempt_at,
     locked_by, last_error_code, last_error_message, idempotency_key, created_at, updated_at)
SELECT id, 'idle', 'due in an hour', '{}', 'pending', 0, 5, now() + interval '1 hour',
       '', '', '', 'bench-idle-future', now(), now()
FROM provider
"""


def connections(dbname: str) -> list[tuple[int, str, str, str]]:
    """(pid, application_name, state, last statement) of the client connections to dbname."""
    with common.admin() as conn:
        rows = conn.execute(
            "SELECT pid, application_name, state, query FROM pg_stat_activity"
            " WHERE datname = %s AND backend_type = 'client backend' ORDER BY backend_start",
            (dbname,),
        ).fetchall()
    return [
        (pid, app, state or "", " ".join((query or "").split())) for pid, app, state, query in rows
    ]


# --- measuring ----------------------------------------------------------------------------


@dataclass
class Subject:
    label: str
    child: common.Child
    dbname: str
    t0: float = 0.0
    cpu0: float = 0.0
    ctx0: tuple[int, int] = (0, 0)
    db0: tuple[int, int] = (0, 0)
    held0: dict[int, Any] = field(default_factory=dict)  # pid -> query_start at t0
    results: dict[str, Any] = field(default_factory=dict)


def db_counters(dbname: str) -> tuple[int, int]:
    """(transactions, sessions) of ``dbname`` as published in pg_stat_database."""
    with common.admin() as conn:
        row = conn.execute(
            "SELECT xact_commit + xact_rollback, sessions FROM pg_stat_database WHERE datname = %s",
            (dbname,),
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


class ActivitySampler(threading.Thread):
    """Samples pg_stat_activity of some databases; client backends only."""

    def __init__(self, dbnames: list[str], interval: float) -> None:
        super().__init__(name="activity-sampler", daemon=True)
        self.dbnames = dbnames
        self.interval = interval
        self.stop = threading.Event()
        self.max_held = dict.fromkeys(dbnames, 0)
        self.pids: dict[str, set[int]] = {d: set() for d in dbnames}
        self.query_starts: dict[str, set[tuple[int, datetime]]] = {d: set() for d in dbnames}
        self.apps: dict[str, set[str]] = {d: set() for d in dbnames}
        self.samples = 0

    def snapshot(self, conn: Any) -> dict[str, list[tuple[int, str, datetime | None]]]:
        rows = conn.execute(
            "SELECT datname, pid, application_name, query_start FROM pg_stat_activity"
            " WHERE datname = ANY(%s) AND backend_type = 'client backend'",
            (self.dbnames,),
        ).fetchall()
        found: dict[str, list[tuple[int, str, datetime | None]]] = {d: [] for d in self.dbnames}
        for datname, pid, app, query_start in rows:
            found[datname].append((pid, app, query_start))
        return found

    def run(self) -> None:
        with common.admin() as conn:
            while not self.stop.is_set():
                for dbname, rows in self.snapshot(conn).items():
                    self.max_held[dbname] = max(self.max_held[dbname], len(rows))
                    for pid, app, query_start in rows:
                        self.pids[dbname].add(pid)
                        self.apps[dbname].add(app)
                        if query_start is not None:
                            self.query_starts[dbname].add((pid, query_start))
                self.samples += 1
                self.stop.wait(self.interval)


def held_now(dbname: str) -> dict[int, Any]:
    with common.admin() as conn:
        rows = conn.execute(
            "SELECT pid, query_start FROM pg_stat_activity"
            " WHERE datname = %s AND backend_type = 'client backend'",
            (dbname,),
        ).fetchall()
    return {pid: query_start for pid, query_start in rows}


def begin(subject: Subject) -> None:
    subject.held0 = held_now(subject.dbname)
    subject.db0 = db_counters(subject.dbname)
    subject.cpu0 = common.cpu_seconds(subject.child.pid)
    subject.ctx0 = common.context_switches(subject.child.pid)
    subject.t0 = time.perf_counter()


def end(subject: Subject, sampler: ActivitySampler) -> None:
    t1 = time.perf_counter()
    cpu1 = common.cpu_seconds(subject.child.pid)
    ctx1 = common.context_switches(subject.child.pid)
    threads = common.thread_count(subject.child.pid)
    db1 = db_counters(subject.dbname)
    held1 = held_now(subject.dbname)
    wall = t1 - subject.t0
    seen = sampler.query_starts[subject.dbname] | set(held1.items())
    moved = {
        (pid, qs)
        for pid, qs in seen
        if pid in subject.held0
        and qs is not None
        and (subject.held0[pid] is None or qs > subject.held0[pid])
    }
    lines = subject.child.lines_between(subject.t0, t1)
    subject.results = {
        "wall": wall,
        "xacts": db1[0] - subject.db0[0],
        "held_statements": len(moved),
        "sessions": db1[1] - subject.db0[1],
        "held_t0": len(subject.held0),
        "held_max": max(sampler.max_held[subject.dbname], len(held1), len(subject.held0)),
        "cpu_pct": 100.0 * (cpu1 - subject.cpu0) / wall,
        "cpu_s": cpu1 - subject.cpu0,
        "lines": len(lines),
        "first_lines": lines[:3],
        "wakeups": (ctx1[0] - subject.ctx0[0]) + (ctx1[1] - subject.ctx0[1]),
        "threads": threads,
        "apps": sorted(sampler.apps[subject.dbname]),
    }


def report(worker: Subject, poller: Subject, interval: float, seconds: float) -> None:
    w, p = worker.results, poller.results

    def day(value: float, wall: float) -> str:
        return f"{value} ({value * 86400.0 / wall:,.0f}/day)"

    rows = [
        ["SQL transactions (pg_stat_database)", day(w["xacts"], w["wall"]),
         day(p["xacts"], p["wall"]), "0"],
        ["statements on held connections", w["held_statements"], p["held_statements"], "0"],
        ["new connections (sessions delta)", day(w["sessions"], w["wall"]),
         day(p["sessions"], p["wall"]), "0"],
        ["connections held (at start / max)", f"{w['held_t0']} / {w['held_max']}",
         f"{p['held_t0']} / {p['held_max']}", "7 (ORM, LISTEN, outbox x2, timers x2, leader)"],
        ["CPU % of one core", f"{w['cpu_pct']:.3f} ({w['cpu_s']:.2f} s)",
         f"{p['cpu_pct']:.3f} ({p['cpu_s']:.2f} s)", "< 0.1"],
        ["log lines (INFO)", day(w["lines"], w["wall"]), day(p["lines"], p["wall"]), "0"],
        ["wake-ups (context switches)", f"{w['wakeups']} ({w['wakeups'] / w['wall']:.2f}/s)",
         f"{p['wakeups']} ({p['wakeups'] / p['wall']:.2f}/s)", "~0"],
        ["threads", w["threads"], p["threads"], ""],
    ]  # fmt: skip
    print(
        f"\nIdle cost over {w['wall']:.1f} s (asked {seconds:g} s); '/day' = extrapolated to 24 h"
    )
    print(common.table(["metric", "runworker", f"{interval:g} s polling loop", "goal"], rows))
    print(f"\nworker connections seen (application_name): {', '.join(w['apps']) or '-'}")
    print("worker connections held at the end (pid, application_name, state, last statement):")
    for pid, app, state, query in w.get("connections", []):
        print(f"  {pid} {app or '(none)'} [{state}] {query[:110]}")
    if "outbox_before" in w:
        before, after = w["outbox_before"], w["outbox_after"]
        print(
            f"outbox (healthz, read outside the window): drains {before['drains']} -> "
            f"{after['drains']}, sent {after['sent']}, next_due_at {after['next_due_at']}"
        )
    for label, res in (("runworker", w), ("polling loop", p)):
        if res["first_lines"]:
            print(f"first log lines of {label} in the window:")
            for line in res["first_lines"]:
                print(f"  {line[:160]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0, help="measured window")
    parser.add_argument("--settle", type=float, default=11.0, help="wait after ready")
    parser.add_argument("--interval", type=float, default=5.0, help="baseline poll interval")
    parser.add_argument("--sample", type=float, default=0.2, help="pg_stat_activity period")
    parser.add_argument("--port", type=int, default=0, help="worker /healthz port; 0: a free one")
    parser.add_argument("--keep-databases", action="store_true")
    parser.add_argument(
        "--no-future-delivery",
        action="store_true",
        help="leave the outbox table empty (no timer pending)",
    )
    parser.add_argument("--poller", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.poller:
        run_poller(args.interval)
        return

    args.port = args.port or common.free_port()
    print(f"preparing {WORKER_DB} and {POLL_DB} ...", flush=True)
    common.migrated_database(WORKER_DB)
    common.fresh_database(POLL_DB, template=WORKER_DB)
    if not args.no_future_delivery:
        with common.admin(dbname=WORKER_DB) as conn:
            conn.execute(SEED_FUTURE_DELIVERY)
    children: list[common.Child] = []
    sampler = ActivitySampler([WORKER_DB, POLL_DB], args.sample)
    try:
        worker_env = common.django_env(common.db_url(WORKER_DB), WORKER_HEALTH_PORT=str(args.port))
        worker = common.Child(common.worker_args(), worker_env, label="runworker")
        children.append(worker)
        poll_env = common.django_env(common.db_url(POLL_DB))
        poll_args = [common.PYTHON, __file__, "--poller", "--interval", str(args.interval)]
        poller = common.Child(poll_args, poll_env, label="poller")
        children.append(poller)
        worker.wait_for("event=cron.ready", timeout=60)
        poller.wait_for("event=poller.ready", timeout=60)
        common.wait_health(worker, args.port, outbox_ready, "outbox", timeout=60)
        cron = common.healthz(args.port)["components"]["cron"]
        print(
            f"both ready; settling {args.settle:g} s; worker's next fire at "
            f"{cron['next_fire_at']} ({cron['jobs']} jobs)",
            flush=True,
        )
        time.sleep(args.settle)
        subjects = [Subject("runworker", worker, WORKER_DB), Subject("poller", poller, POLL_DB)]
        outbox_before = common.healthz(args.port)["components"]["outbox"]
        sampler.start()
        for subject in subjects:
            begin(subject)
        print(f"measuring for {args.seconds:g} s ...", flush=True)
        time.sleep(args.seconds)
        for subject in subjects:
            end(subject, sampler)
        sampler.stop.set()
        sampler.join(timeout=5)
        subjects[0].results.update(
            connections=connections(WORKER_DB),
            outbox_before=outbox_before,
            outbox_after=common.healthz(args.port)["components"]["outbox"],
        )
        for child in children:
            if child.popen.poll() is not None:
                print(f"warning: {child.label} exited early:\n{child.tail()}")
        report(subjects[0], subjects[1], args.interval, args.seconds)
    finally:
        sampler.stop.set()
        for child in children:
            child.stop()
        if not args.keep_databases:
            common.drop_database(WORKER_DB)
            common.drop_database(POLL_DB)


if __name__ == "__main__":
    main()
