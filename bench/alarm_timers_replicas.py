"""Two worker replicas on the same timers: each fires exactly once, beside one worker alone.

What it measures: the plan of ``alarm_timers_lateness.py`` (``--count`` 10,000 timers over
``--seconds`` 60, 10 % rescheduled and 10 % cancelled mid-way, inserted by plain SQL) served by
two ``manage.py runworker --only alarm_timers`` processes on one database, then (``--single``,
on by default) by one worker on a fresh database. Both replicas see every timer (NOTIFY) and
race for it at its due time; the claim is a conditional update under a row lock. Prints, per
column: expected, fired, missed, duplicates (an action recorded more than once), early, fired
per replica, and lateness to the action's start / committed result (ms). Goal: duplicates 0,
missed 0.

Run: ``.venv/bin/python bench/alarm_timers_replicas.py`` (~3 min), ``--quick`` (3,000 over
20 s), ``--no-single``. Needs PostgreSQL at ``BENCH_PG_URL``; creates and drops
``bench_alarm_*_<pid>`` databases.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import alarm_common as ac
from bench import common
from bench.outbox_common import machine_line


def serve(dbname: str, plan: ac.Plan, replicas: int, lead: float) -> dict[str, Any]:
    workers = [ac.spawn_worker(dbname, f"worker-{n}")[0] for n in range(replicas)]
    return ac.run_on_table(dbname, plan, lead, workers)


def print_table(results: dict[str, dict[str, Any]]) -> None:
    rows = [
        ("expected to fire", lambda r: r["expected"]),
        ("fired", lambda r: r["fired"]),
        ("missed", lambda r: r["missed"]),
        ("duplicates", lambda r: r["duplicates"]),
        ("early", lambda r: r["early"]),
        ("fired per replica", lambda r: " + ".join(map(str, sorted(r["by_worker"].values())))),
        ("to start p50/p99/max ms", lambda r: ac.fmt_stats(r["start"])),
        ("to commit p50/p99/max ms", lambda r: ac.fmt_stats(r["committed"])),
        ("CPU s, all replicas", lambda r: f"{r['cpu']:.1f}"),
        ("machine busy / others %",
         lambda r: f"{r['machine']['busy']:.0f} / {r['machine']['others']:.0f}"),
    ]  # fmt: skip
    goals = ["", "", "0", "0", "0", "", "", "", "", ""]
    body = [
        [label, *(str(fn(r)) for r in results.values()), goal]
        for (label, fn), goal in zip(rows, goals, strict=True)
    ]
    print(common.table(["", *results, "goal"], body))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--lead", type=float, default=5.0)
    parser.add_argument("--quick", action="store_true", help="3,000 timers over 20 s")
    parser.add_argument("--single", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--keep-databases", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.count, args.seconds = 3_000, 20.0
    plan = ac.Plan.make(args.count, args.seconds)
    print(f"{args.count} timers over {args.seconds:g} s, two replicas. {machine_line()}")
    template = common.run_name("bench_alarm_template")
    names = {n: common.run_name(f"bench_alarm_{n}") for n in ("replicas", "single")}
    common.migrated_database(template)
    results: dict[str, dict[str, Any]] = {}
    try:
        subjects = [("two replicas", "replicas", 2)]
        if args.single:
            subjects.append(("one worker", "single", 1))
        for label, key, replicas in subjects:
            print(f"==> {label}", flush=True)
            common.fresh_database(names[key], template=template)
            results[label] = serve(names[key], plan, replicas, args.lead)
    finally:
        if not args.keep_databases:
            for name in (template, *names.values()):
                common.drop_database(name)
    print()
    print_table(results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
