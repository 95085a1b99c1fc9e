"""Text for operators: relative times ("in 3h 12m"), aligned tables, task listings. Pure.

Nothing here reads the clock or the database: ``now``, the time zone and what the database
knows (a ``JobView``) are arguments, so every output is a function of its inputs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import TYPE_CHECKING

from services.registry import TaskSpec
from services.schedules import ScheduleError, upcoming

if TYPE_CHECKING:  # execution imports the ORM; this module stays importable without Django
    from services.execution import Outcome

_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
NOT_SYNCED = "not synced"
TRACEBACK_LINES = 12
TASK_COLUMNS = ("NAME", "SCHEDULE", "ENABLED", "PAUSED", "NEXT RUN", "LAST RUN", "STATUS")


@dataclass(frozen=True)
class JobView:
    """What the database knows of one task: its job row and its latest run."""

    paused: bool
    active: bool = True
    last_run_at: datetime | None = None
    last_status: str = ""


def span(seconds: float) -> str:
    """A length of time in its two largest units: "45s", "3h 12m", "2d 4h" (truncated)."""
    whole = int(seconds)
    for index, (unit, size) in enumerate(_UNITS):
        if whole >= size or unit == "s":
            text = f"{whole // size}{unit}"
            if unit == "s":
                return text
            smaller_unit, smaller_size = _UNITS[index + 1]
            rest = whole % size // smaller_size
            return f"{text} {rest}{smaller_unit}" if rest else text
    raise AssertionError("unreachable: the loop returns at the seconds unit")


def relative(moment: datetime, now: datetime) -> str:
    """When ``moment`` is due, seen from ``now``: "in 3h 12m", "overdue by 5m", "now"."""
    seconds = (moment - now).total_seconds()
    if abs(seconds) < 1:
        return "now"
    return f"in {span(seconds)}" if seconds > 0 else f"overdue by {span(-seconds)}"


def ago(moment: datetime, now: datetime) -> str:
    """How long before ``now`` something happened: "5m ago", "just now"."""
    seconds = (now - moment).total_seconds()
    return "just now" if seconds < 1 else f"{span(seconds)} ago"


def duration(seconds: float | None) -> str:
    """A run's duration: "0.012s", "4.2s", "3m 4s"; "-" when unknown."""
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds:.3f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    return span(seconds)


def local_time(moment: datetime, tz: tzinfo) -> str:
    return moment.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S %Z")


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns left-aligned to their widest cell, two spaces apart, a dashed rule under headers."""
    widths = [len(header) for header in headers]
    for row in rows:
        if len(row) != len(headers):
            raise ValueError(f"row has {len(row)} cells, expected {len(headers)}: {row!r}")
        widths = [max(width, len(cell)) for width, cell in zip(widths, row, strict=True)]
    lines = [headers, ["-" * width for width in widths], *rows]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


# --- listings ----------------------------------------------------------------------------------


def task_row(
    spec: TaskSpec, enabled: str, job: JobView | None, now: datetime, tz: tzinfo
) -> list[str]:
    """One row of ``list_tasks``; ``spec`` has its time zone bound, ``job`` None if not synced."""
    schedule = spec.schedule.describe() if spec.schedule else "manual only"
    paused = NOT_SYNCED if job is None else ("yes" if job.paused else "no")
    last_run, status = "never", "-"
    if job is not None and job.last_run_at is not None:
        last_run = f"{local_time(job.last_run_at, tz)} ({ago(job.last_run_at, now)})"
        status = job.last_status
    return [spec.name, schedule, enabled, paused, next_run(spec, job, now, tz), last_run, status]


def next_run(spec: TaskSpec, job: JobView | None, now: datetime, tz: tzinfo) -> str:
    if spec.schedule is None:
        return "manual only"
    if job is not None and job.paused:
        return "paused"
    if job is not None and not job.active:
        return "not scheduled (job inactive)"
    try:
        slot = spec.schedule.next_slot(now)
    except ScheduleError as exc:
        return f"invalid schedule: {exc}"
    return "none (schedule ended)" if slot is None else at_and_relative(slot, now, tz)


def at_and_relative(moment: datetime, now: datetime, tz: tzinfo) -> str:
    return f"{local_time(moment, tz)} ({relative(moment, now)})"


def upcoming_lines(spec: TaskSpec, count: int, now: datetime, tz: tzinfo) -> list[str]:
    """``task_schedule``'s block for one task: a heading, then one line per fire time."""
    heading = f"{spec.name}: {spec.schedule.describe() if spec.schedule else 'manual only'}"
    if spec.schedule is None:
        return [heading, "  no schedule: runs only by hand (manage.py run_task)"]
    try:
        slots = upcoming(spec.schedule, now, count)
    except ScheduleError as exc:
        return [heading, f"  invalid schedule: {exc}"]
    # Fire times, not slots: a jittered schedule fires a deterministic delay after its slot.
    fires = [slot + timedelta(seconds=spec.schedule.fire_delay(spec.name, slot)) for slot in slots]
    lines = [f"  {at_and_relative(fire, now, tz)}" for fire in fires]
    if len(slots) < count:
        lines.append("  (no further runs: the schedule ends)")
    return [heading, *lines]


def run_report(name: str, run_id: int, outcome: Outcome, seconds: float) -> tuple[str, str]:
    """What ``run_task`` prints: (for stdout, for stderr); the result as JSON on success."""
    attempts = "1 attempt" if outcome.attempts == 1 else f"{outcome.attempts} attempts"
    verb = "in" if outcome.status == "success" else "after"
    summary = f"task {name}: {outcome.status} {verb} {duration(seconds)} (run {run_id}, {attempts})"
    if outcome.status == "success":
        result = json.dumps(outcome.result, indent=2, sort_keys=True, ensure_ascii=False)
        return f"{summary}\nresult: {result}", ""
    problem = [f"error: {outcome.error}"]
    tail = outcome.traceback.rstrip().splitlines()[-TRACEBACK_LINES:]
    if tail:
        problem += [f"traceback (last {len(tail)} lines):", *tail]
    return summary, "\n".join(problem)
