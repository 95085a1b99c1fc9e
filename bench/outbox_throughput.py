"""Drain throughput of the notification outbox: a burst of pending deliveries to a local sink.

What it measures: with the subject running, idle and warmed up (20 deliveries one by one),
one autocommit ``INSERT ... SELECT FROM generate_series`` writes ``--count`` (10,000) pending
deliveries (every NOT NULL column given; the trigger NOTIFYs once per row at COMMIT). From the
moment that INSERT returns (its COMMIT done), it times: the first request at the sink, the
last of the ``--count`` distinct ``Idempotency-Key``s at the sink, and the moment the subject's
table shows none of them left (the outbox's ``pending``/``sending``; procrastinate's
``todo``/``doing``), read every 5 ms once all have arrived. Deliveries/s = count / (COMMIT ->
all sent in the table). Claims and result writes: distinct ``last_attempt_at`` and
``updated_at`` stamps among the burst's rows (each statement stamps its rows with one time),
so rows per claim shows how the subject batches. Worker CPU-seconds per 1,000 sent: psutil
user+system of the subject's process over the same span. Machine CPU (``/proc/stat``) shows
whether something else was running; new HTTP connections at the sink, whether keep-alive held.

Subjects, one after the other, each in its own ``bench_outbox_<subject>_<pid>`` database and
process (see ``bench/outbox_common.py``): the outbox (``manage.py runworker --only outbox``,
``LOG_LEVEL=WARNING``, default ``OUTBOX_CONCURRENCY``/``OUTBOX_BATCH`` of 50 unless
``--worker-env`` says otherwise), the bare NOTIFY + SKIP LOCKED loop (the floor), procrastinate
3 (a plain INSERT into ``procrastinate_jobs`` per job, one statement for all; its worker with
``--procrastinate-concurrency`` slots) and the 5 s polling loop, whose figure includes its wait
for the next poll, so its drain rate (first request -> all sent) is printed too.
Goal: >= 4,000 deliveries/s. ``--quick``: 2,000 deliveries. A subject that has not finished
``--patience`` s (default 30 + count/100) after the COMMIT is cut off. About 2 minutes by
default, 1 with ``--quick`` (procrastinate at ~200/s here takes most of it).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common
from bench.outbox_common import (
    MachineLoad,
    Sink,
    Subject,
    add_subject_arguments,
    backend_cpu_seconds,
    cell,
    ms,
    run_subjects,
    subject_names,
    warm_up,
)

GOAL = 4000.0


async def burst(subject: Subject, sink: Sink, count: int, patience: float) -> dict[str, Any]:
    prefix = f"{subject.key}-burst-"
    arrived_before = len(sink.arrivals)
    connections_before = sink.connections
    load = MachineLoad()
    cpu0 = common.cpu_seconds(subject.pid)
    db_cpu0 = backend_cpu_seconds(subject.dbname)
    sink_cpu0 = time.process_time()
    started = time.perf_counter_ns()
    await subject.enqueue_many(prefix, count)
    committed = time.perf_counter_ns()
    deadline = time.perf_counter() + patience
    all_arrived = await sink.wait_count(arrived_before + count, patience)
    while await subject.unfinished() and time.perf_counter() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.005)  # the table is the truth: read it
    done = time.perf_counter_ns()
    unfinished = await subject.unfinished()
    cpu = common.cpu_seconds(subject.pid) - cpu0
    db_cpu = backend_cpu_seconds(subject.dbname) - db_cpu0
    sink_cpu = time.process_time() - sink_cpu0
    times = sorted(at for key, at in sink.arrivals.items() if key.startswith(prefix))
    span = (done - committed) / 1e9
    first = times[0] if times else done
    finished = all_arrived and unfinished == 0
    return {
        "count": count,
        "arrived": len(times),
        "unfinished": unfinished,
        "finished": finished,
        "insert_ms": (committed - started) / 1e6,
        "first_ms": (first - committed) / 1e6,
        "total_s": span,
        "rate": count / span if finished else float("nan"),
        "drain_rate": count / ((done - first) / 1e9) if finished and times else float("nan"),
        "cpu_per_1000": 1000 * cpu / max(len(times), 1),
        "db_cpu_per_1000": 1000 * db_cpu / max(len(times), 1),
        "sink_cpu_per_1000": 1000 * sink_cpu / max(len(times), 1),
        "cpu_pct": 100 * cpu / span,
        "machine": load.finish(),
        "connections": sink.connections - connections_before,
    }


async def measure(subject: Subject, sink: Sink, args: argparse.Namespace) -> dict[str, Any]:
    warmed = await warm_up(subject, sink)
    print(f"[{subject.label}] warmed up ({warmed}/20); {args.count:,} at once ...", flush=True)
    result = await burst(subject, sink, args.count, args.patience)
    batches = await subject.batches(f"{subject.key}-burst-")
    result.update(label=subject.label, statuses=await subject.statuses(), batches=batches)
    return result


def cores_at_goal(result: dict[str, Any]) -> str:
    """The cores the worker, its backends and the sink would keep busy at the goal's rate."""
    per_1000 = result["cpu_per_1000"] + result["db_cpu_per_1000"] + result["sink_cpu_per_1000"]
    return f"{per_1000 * GOAL / 1000:.2f} of {os.cpu_count()}"


def report(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> None:
    names = list(results)
    heads = ["metric", *(results[n].get("label", n) for n in names), "goal (outbox)"]

    def row(title: str, fmt: Any, goal: str = "") -> list[str]:
        return [title, *(cell(results[n], fmt) for n in names), goal]

    outbox = results.get("worker", {})
    met = ""
    if "rate" in outbox:
        met = "met" if outbox["rate"] >= GOAL else "MISSED"

    def batches(r: dict[str, Any]) -> str:
        if not r.get("batches"):
            return "1 fetch + 1 finish per job"
        claims, writes = r["batches"]
        return f"{claims:,} / {writes:,} ({r['arrived'] / max(claims, 1):.1f})"

    def rate(value: float) -> str:
        return "-" if value != value else f"{value:,.0f}"

    print(f"\nDrain throughput: {args.count:,} pending deliveries inserted by one statement, "
          "timed from its COMMIT")  # fmt: skip
    print(common.table(heads, [
        row("deliveries arrived / asked", lambda r: f"{r['arrived']:,} / {r['count']:,}"),
        row("the INSERT of all (ms)", lambda r: ms(r["insert_ms"])),
        row("COMMIT -> first request (ms)", lambda r: ms(r["first_ms"])),
        row("COMMIT -> all sent in the table (s)",
            lambda r: f"{r['total_s']:.2f}" + ("" if r["finished"] else " (cut off)")),
        row("deliveries/s (COMMIT -> all sent)", lambda r: rate(r["rate"]),
            f">= {GOAL:,.0f}/s: {met}"),
        row("drain rate/s (first request -> all sent)", lambda r: rate(r["drain_rate"])),
        row("claims / result writes (rows per claim)", batches),
        row("new HTTP connections at the sink", lambda r: f"{r['connections']:,}"),
        row("worker CPU-seconds per 1,000 sent", lambda r: f"{r['cpu_per_1000']:.3f}"),
        row("  its PostgreSQL backends, per 1,000", lambda r: f"{r['db_cpu_per_1000']:.3f}"),
        row("  the sink (this process), per 1,000", lambda r: f"{r['sink_cpu_per_1000']:.3f}"),
        row(f"  all three: cores busy at {GOAL:,.0f}/s", cores_at_goal),
        row("the worker's ceiling on one core (/s)",
            lambda r: rate(1000 / max(r["cpu_per_1000"], 1e-9))),
        row("worker CPU % of a core", lambda r: f"{r['cpu_pct']:.0f}"),
        row("machine CPU %: busy / others / steal",
            lambda r: f"{r['machine']['busy']:.0f} / {r['machine']['others']:.0f} / "
                      f"{r['machine']['steal']:.0f}"),
    ]))  # fmt: skip
    print(
        "\nReference (issue 3, same machine kind): procrastinate 3.10 10k burst 836 jobs/s; "
        "bare NOTIFY + SKIP LOCKED loop claiming 50 rows per transaction 8,100/s."
    )
    for name in names:
        if "statuses" in results[name]:
            print(f"{results[name]['label']}: rows at the end: {results[name]['statuses']}")


async def run(args: argparse.Namespace) -> None:
    await run_subjects(
        args,
        lambda subject, sink: measure(subject, sink, args),
        lambda results: report(results, args),
        dict(args.worker_env),
    )


def env_pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.startswith("OUTBOX_"):
        raise argparse.ArgumentTypeError("expected OUTBOX_NAME=value")
    return name, value


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 deliveries")
    parser.add_argument("--count", type=int, default=None, help="deliveries; default 10,000")
    parser.add_argument("--patience", type=float, default=None, help="seconds per subject")
    parser.add_argument("--worker-env", type=env_pair, action="append", default=[],
                        help="e.g. OUTBOX_CONCURRENCY=100 (repeatable)")  # fmt: skip
    add_subject_arguments(parser)
    args = parser.parse_args()
    args.count = args.count or (2000 if args.quick else 10000)
    args.patience = args.patience or 30.0 + args.count / 100
    args.subjects = subject_names(args.subjects)
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
