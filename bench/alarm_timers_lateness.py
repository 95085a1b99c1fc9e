"""Lateness of the alarm's durable timers beside APScheduler 3 and a 5 s polling loop.

What it measures: ``--count`` (10,000) timers due uniformly over ``--seconds`` (60), 10 %
rescheduled and 10 % cancelled at the window's mid-point (``bench/alarm_common.py``: the
plan, the same for every subject). Subjects, one after the other, each in its own database:

* the worker: ``manage.py runworker --only alarm_timers`` (the listener runs too), WARNING
  logs; each timer a pending ``emit_event`` action inserted by plain SQL, all in one
  transaction ``--lead`` (5) s before the window; the mid-way changes are SQL UPDATEs;
* APScheduler 3's in-memory AsyncIOScheduler (``pip install 'apscheduler<4'``; its column
  says n/a otherwise), each job doing the same durable effect (INSERT an alarm event);
* the floor: a bare LISTEN + heapq + one minimal UPDATE/INSERT loop on one connection
  (``bench/alarm_baselines.py floor``), what any durable timer costs on this machine;
* a polling loop that fires every due row every 5 s (the old design).

Per subject: timers expected to fire, fired, missed, duplicates (an action recorded twice),
early (a start or a commit before its due time), and p50/p99/max lateness in ms from the due
time to the action's start (the event row's ``clock_timestamp()``, after the claim; APScheduler:
the job's first line), to its committed result (the commit's NOTIFY reaching this process;
APScheduler: after its INSERT returned) and, for table subjects, to the wake-up (the worker's
clock as it sent the claim). Also the subject's CPU and the machine's CPU beside it.
Goals: p99 <= 3 ms to the start, <= 5 ms to the committed result, max <= 20 ms; early,
duplicates and missed 0.

Run: ``.venv/bin/python bench/alarm_timers_lateness.py`` (~4 min), ``--quick`` (3,000 over
20 s, ~1.5 min). Needs PostgreSQL at ``BENCH_PG_URL``; creates and drops
``bench_alarm_*_<pid>`` databases.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import alarm_common as ac
from bench import common
from bench.outbox_common import MachineLoad, machine_line

# NO_RECORDER=1: no LISTEN connection of the benchmark's own (no "to commit" figures), to see
# how much the measuring costs the subjects on a busy machine.
RECORD = not os.environ.get("NO_RECORDER")
GOALS = {"start p99": 3.0, "committed p99": 5.0, "max": 20.0}


def apscheduler_available() -> str | None:
    """None when APScheduler 3 imports here, else the reason."""
    check = subprocess.run(
        [common.PYTHON, "-c", "import apscheduler; print(apscheduler.__version__)"],
        capture_output=True,
        text=True,
    )
    version = check.stdout.strip()
    if check.returncode != 0:
        return "pip install 'apscheduler<4'"
    if not version.startswith("3."):
        return f"APScheduler {version} installed; this compares with 3.x"
    return None


def apscheduler_subject(dbname: str, plan: ac.Plan, lead: float) -> dict[str, Any]:
    if reason := apscheduler_available():
        return {"unavailable": reason}
    with tempfile.TemporaryDirectory() as tmp:
        plan_file, out = Path(tmp) / "plan.json", Path(tmp) / "runs.json"
        plan_file.write_text(plan.to_json())
        start = time.time() + lead
        args = [common.PYTHON, "bench/alarm_baselines.py", "apscheduler", dbname,
                str(plan_file), repr(start), str(out)]  # fmt: skip
        load = MachineLoad()
        child = common.Child(args, common.django_env(common.db_url(dbname)), label="apscheduler")
        cpu = 0.0
        while child.popen.poll() is None:
            cpu = max(cpu, _cpu_or_zero(child.pid))
            time.sleep(0.5)
        child.stop()
        if child.popen.returncode != 0:
            return {"error": child.tail(3)}
        runs = json.loads(out.read_text())
    per_index: dict[int, list[list[float]]] = {}
    for index, due, began, committed in runs:
        per_index.setdefault(int(index), []).append([due, began, committed])
    expected = plan.final_dues()
    records = [
        ac.Record(index in expected, runs[0][0], runs[0][1], runs[0][2], None, len(runs))
        for index, runs in per_index.items()
    ]
    result = ac.summarize(records, len(expected), len(set(expected) - set(per_index)))
    result.update(cpu=cpu, machine=load.finish())
    return result


def _cpu_or_zero(pid: int) -> float:
    try:
        return common.cpu_seconds(pid)
    except Exception:
        return 0.0


def print_table(results: dict[str, dict[str, Any]], seconds: float) -> None:
    def cell(result: dict[str, Any], fn: Any) -> str:
        if "unavailable" in result:
            return f"n/a ({result['unavailable']})"
        if "error" in result:
            return "error"
        return str(fn(result))

    rows = [
        ("expected to fire", lambda r: r["expected"]),
        ("fired", lambda r: r["fired"]),
        ("missed", lambda r: r["missed"]),
        ("duplicates", lambda r: r["duplicates"]),
        ("early", lambda r: r["early"]),
        ("fired but cancelled", lambda r: r["unexpected"]),
        ("to start p50/p99/max ms", lambda r: ac.fmt_stats(r["start"])),
        ("to commit p50/p99/max ms", lambda r: ac.fmt_stats(r["committed"])),
        ("to wake-up p50/p99/max ms", lambda r: ac.fmt_stats(r["wake"])),
        ("CPU s (% of a core)", lambda r: f"{r['cpu']:.1f} ({100 * r['cpu'] / seconds:.1f} %)"),
        (
            "machine busy / others %",
            lambda r: f"{r['machine']['busy']:.0f} / {r['machine']['others']:.0f}",
        ),
    ]
    goals = ["", "", "0", "0", "0", "0", "p99 <= 3, max <= 20", "p99 <= 5, max <= 20", "", "", ""]
    headers = ["", *results, "goal"]
    body = [
        [label, *(cell(r, fn) for r in results.values()), goal]
        for (label, fn), goal in zip(rows, goals, strict=True)
    ]
    print(common.table(headers, body))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--lead", type=float, default=5.0)
    parser.add_argument("--poll-interval", type=float, default=5.0)
    parser.add_argument("--quick", action="store_true", help="3,000 timers over 20 s")
    parser.add_argument(
        "--only", choices=["worker", "floor", "apscheduler", "poll"], action="append"
    )
    parser.add_argument("--keep-databases", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.count, args.seconds = 3_000, 20.0
    only = set(args.only or ["worker", "floor", "apscheduler", "poll"])
    plan = ac.Plan.make(args.count, args.seconds)
    print(f"{args.count} timers over {args.seconds:g} s; {len(plan.rescheduled)} rescheduled "
          f"and {len(plan.cancelled)} cancelled at {plan.mid:g} s. {machine_line()}")  # fmt: skip
    template = common.run_name("bench_alarm_template")
    subjects = ("worker", "floor", "apscheduler", "poll")
    names = {s: common.run_name(f"bench_alarm_{s}") for s in subjects}
    common.migrated_database(template)
    results: dict[str, dict[str, Any]] = {}
    try:
        for subject in subjects:
            if subject not in only:
                continue
            common.fresh_database(names[subject], template=template)
            print(f"==> {subject}", flush=True)
            db = names[subject]
            if subject == "worker":
                worker = ac.spawn_worker(db, "worker")[0]
                results["worker (durable)"] = ac.run_on_table(
                    db, plan, args.lead, [worker], record=RECORD
                )
            elif subject == "floor":
                floor = ac.baseline_child(db, "floor")
                results["bare claim loop (floor)"] = ac.run_on_table(
                    db, plan, args.lead, [floor], record=RECORD
                )
            elif subject == "apscheduler":
                results["APScheduler 3 (memory)"] = apscheduler_subject(db, plan, args.lead)
            else:
                poll = ac.baseline_child(db, "poll", str(args.poll_interval))
                results[f"poll every {args.poll_interval:g} s"] = ac.run_on_table(
                    db, plan, args.lead, [poll], record=RECORD, tail=args.poll_interval
                )
    finally:
        if not args.keep_databases:
            for name in (template, *names.values()):
                common.drop_database(name)
    print()
    print_table(results, args.seconds)
    print(f"\n{machine_line()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
