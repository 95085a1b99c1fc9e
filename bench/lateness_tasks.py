"""Bench-only tasks for ``bench/cron_lateness.py``; loaded by the worker through
``WORKER_TASK_MODULES=bench.lateness_tasks``. Not a benchmark: run directly it says so.

Each task records, as its first act, ``time.time() - slot.timestamp()`` (its lateness) by
appending ``<task> <slot epoch> <lateness>`` to ``$BENCH_LATENESS_FILE`` and returns the lateness
as its result (``TaskRun.result``). Sync tasks run in the worker's task threads, async ones on
its event loop, so both paths are measured.
"""

from __future__ import annotations

import os
import time
from datetime import datetime
from typing import Any

# name -> (schedule spec, runs on the event loop?). Cron with 6 fields has the seconds LAST.
TASKS: dict[str, tuple[str, bool]] = {
    "bench_every_1s_sync": ("every 1", False),
    "bench_every_1s_async": ("every 1", True),
    "bench_cron_1s": ("* * * * * *", False),
    "bench_cron_2s": ("* * * * * */2", True),
    "bench_cron_5s": ("* * * * * */5", False),
}


def schedule_of(spec: str) -> Any:
    """The services.schedules object for a TASKS spec."""
    from services.schedules import Cron, Every

    if spec.startswith("every "):
        return Every(float(spec.split()[1]))
    return Cron(spec)


def record(name: str, slot: datetime) -> float:
    late = time.time() - slot.timestamp()
    path = os.environ.get("BENCH_LATENESS_FILE")
    if path:
        # One small O_APPEND write per line: lines from concurrent tasks never interleave.
        with open(path, "a", encoding="ascii") as out:
            out.write(f"{name} {slot.timestamp():.6f} {late:.6f}\n")
    return late


def _make(name: str, on_loop: bool) -> Any:
    if on_loop:

        async def run_async(slot: datetime) -> float:
            return record(name, slot)

        func: Any = run_async
    else:

        def run_sync(slot: datetime) -> float:
            return record(name, slot)

        func = run_sync
    func.__name__ = func.__qualname__ = name
    func.__doc__ = f"Bench: records its lateness ({'async' if on_loop else 'sync'})."
    return func


def _register() -> None:
    from services.registry import task

    for name, (spec, on_loop) in TASKS.items():
        task(schedule_of(spec), name=name, tags=("bench",), catch_up=False)(_make(name, on_loop))


if __name__ == "__main__":
    print("bench/lateness_tasks.py holds the tasks of cron_lateness.py; it measures nothing.")
else:
    _register()
