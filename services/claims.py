"""Claiming runs: exactly one worker wins each (task, slot), whatever the number of replicas.

All slots due at one instant are claimed in ONE transaction (a handful of statements whatever
their number), so that several tasks due in the same second start within milliseconds:

1. lock the jobs' rows in id order (``FOR UPDATE``; the same order everywhere, no deadlock),
   so two workers deciding about overlap see each other's runs;
2. read the jobs' running runs; close those whose lease ran out (their worker died);
3. insert one TaskRun per request with ``ON CONFLICT (job, slot) DO NOTHING``: a conflict
   means another worker won the slot;
4. advance the jobs' ``last_slot_at`` (the catch-up anchor) and ``next_run_at``.

A claim that changed anything announces it after its commit (``services.run_signals``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from django.db import connection, transaction
from django.db.backends.utils import CursorWrapper

from services import run_signals

logger = logging.getLogger(__name__)

Outcome = Literal["claimed", "skipped", "taken", "paused", "inactive", "refused"]
ABANDONED = "abandoned: its worker stopped renewing the lease (killed or lost)"


@dataclass(frozen=True)
class ClaimRequest:
    name: str
    slot: datetime | None  # None: a manual run, never refused for being "taken"
    source: str
    overlap: str = "skip"
    next_run_at: datetime | None = None


@dataclass(frozen=True)
class Claim:
    outcome: Outcome
    run_id: int | None = None
    detail: str = ""


class AlreadyRunning(RuntimeError):
    """A manual run was refused because the task is running elsewhere."""


@dataclass
class _Job:
    id: int
    paused: bool
    active: bool
    alive: str = ""  # "run N by W since T" while a run of this job is alive


def claim_runs(
    requests: list[ClaimRequest],
    *,
    worker_id: str,
    now: datetime,
    lease_until: datetime,
    force: bool = False,
) -> list[Claim]:
    """Claim ``requests`` in one transaction; one Claim per request, in order."""
    if not requests:
        return []
    with transaction.atomic(), connection.cursor() as cursor:
        names = sorted({r.name for r in requests})
        jobs = _lock_jobs(cursor, names)
        closed = _read_alive_runs(cursor, jobs, now)
        decided: list[Claim | tuple[Any, ...]] = []
        for request in requests:
            decided.append(
                _decide(request, jobs.get(request.name), worker_id, now, lease_until, force)
            )
        inserted = _insert_runs(cursor, [row for row in decided if isinstance(row, tuple)])
        advanced = _advance_jobs(cursor, requests, jobs, now)
        if inserted or closed or advanced:
            run_signals.announce("claimed", names)
    return [_result(row, inserted) for row in decided]


def claim_slot(request: ClaimRequest, **kwargs: Any) -> Claim:
    """Claim one run; a manual run of a task running elsewhere raises AlreadyRunning."""
    [claim] = claim_runs([request], **kwargs)
    if claim.outcome == "refused":
        raise AlreadyRunning(f"task {request.name!r} is already running ({claim.detail})")
    return claim


def _lock_jobs(cursor: CursorWrapper, names: list[str]) -> dict[str, _Job]:
    cursor.execute(
        "SELECT id, name, paused, active FROM services_scheduledjob "
        "WHERE name = ANY(%s) ORDER BY id FOR UPDATE",
        [names],
    )
    return {name: _Job(id, paused, active) for id, name, paused, active in cursor.fetchall()}


def _read_alive_runs(cursor: CursorWrapper, jobs: dict[str, _Job], now: datetime) -> int:
    """Note each job's alive run; close those whose lease ran out (returns how many)."""
    by_id = {job.id: job for job in jobs.values()}
    cursor.execute(
        "SELECT id, job_id, worker_id, started_at, lease_until FROM services_taskrun "
        "WHERE job_id = ANY(%s) AND status = 'running'",
        [list(by_id)],
    )
    expired = []
    for run_id, job_id, worker, started_at, lease_until in cursor.fetchall():
        if lease_until is not None and lease_until < now:
            expired.append(run_id)
        else:
            by_id[job_id].alive = f"run {run_id} by {worker or '?'} since {started_at:%H:%M:%S}"
    if expired:
        cursor.execute(
            "UPDATE services_taskrun SET status = 'failure', finished_at = %s, error = %s "
            "WHERE id = ANY(%s)",
            [now, ABANDONED, expired],
        )
        logger.warning(
            "closed abandoned runs", extra={"event": "cron.runs_abandoned", "count": len(expired)}
        )
    return len(expired)


def _decide(
    request: ClaimRequest,
    job: _Job | None,
    worker_id: str,
    now: datetime,
    lease_until: datetime,
    force: bool,
) -> Claim | tuple[Any, ...]:
    """A final Claim, or the row to insert for it."""
    manual = request.slot is None
    if job is None or not job.active:
        return Claim("inactive")
    if job.paused and not manual:
        return Claim("paused")
    if job.alive and (manual or request.overlap == "skip") and not force:
        if manual:
            return Claim("refused", detail=job.alive)
        error = f"skipped: previous run still running ({job.alive})"
        return (
            job.id,
            request.slot,
            request.source,
            worker_id,
            "skipped",
            now,
            None,
            now,
            0.0,
            error,
        )
    job.alive = job.alive or f"run by {worker_id} since {now:%H:%M:%S}"  # later requests see it
    return (
        job.id,
        request.slot,
        request.source,
        worker_id,
        "running",
        now,
        lease_until,
        None,
        None,
        "",
    )


def _insert_runs(cursor: CursorWrapper, rows: list[tuple[Any, ...]]) -> dict[tuple[int, Any], int]:
    """Insert runs; returns {(job_id, slot): run_id} for the rows this worker won."""
    if not rows:
        return {}
    values = ", ".join(["(%s, %s, %s, %s, %s, 1, %s, %s, %s, %s, %s, '')"] * len(rows))
    cursor.execute(
        "INSERT INTO services_taskrun (job_id, slot, source, worker_id, status, attempt, "
        "started_at, lease_until, finished_at, duration, error, traceback) "
        f"VALUES {values} ON CONFLICT (job_id, slot) DO NOTHING RETURNING job_id, slot, id",
        [value for row in rows for value in row],
    )
    return {(job_id, slot): run_id for job_id, slot, run_id in cursor.fetchall()}


def _advance_jobs(
    cursor: CursorWrapper, requests: list[ClaimRequest], jobs: dict[str, _Job], now: datetime
) -> bool:
    """Move each scheduled job's anchor and next run on; False when there is none."""
    latest: dict[int, ClaimRequest] = {}
    for request in requests:
        job = jobs.get(request.name)
        if job is None or request.slot is None:
            continue
        current = latest.get(job.id)
        if current is None or (current.slot is not None and request.slot > current.slot):
            latest[job.id] = request
    if not latest:
        return False
    values = ", ".join(["(%s::bigint, %s::timestamptz, %s::timestamptz)"] * len(latest))
    cursor.execute(
        "UPDATE services_scheduledjob AS j SET updated_at = %s, next_run_at = v.next_run, "
        "last_slot_at = GREATEST(j.last_slot_at, v.slot) "
        f"FROM (VALUES {values}) AS v(id, slot, next_run) WHERE j.id = v.id",
        [now, *(v for job_id, r in latest.items() for v in (job_id, r.slot, r.next_run_at))],
    )
    return True


def _result(row: Claim | tuple[Any, ...], inserted: dict[tuple[int, Any], int]) -> Claim:
    if isinstance(row, Claim):
        return row
    job_id, slot, status, error = row[0], row[1], row[4], row[9]
    run_id = inserted.get((job_id, slot))  # manual rows (slot NULL) never conflict
    if run_id is None:
        return Claim("taken")
    return Claim("claimed" if status == "running" else "skipped", run_id, error)
