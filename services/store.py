"""Every SQL statement of the cron core: job sync, slot claims, run results, leases.

Functions here are synchronous ORM code; async callers go through ``AsyncStore``, which runs
them on asgiref's single ORM thread (one persistent connection for the worker's bookkeeping)
and records whether the database answered, for ``/healthz``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from asgiref.sync import sync_to_async
from django.db import connection, transaction

from services.models import ScheduledJob, TaskRun
from services.registry import TaskSpec

logger = logging.getLogger(__name__)

ClaimOutcome = Literal["claimed", "skipped", "taken", "paused", "inactive"]


@dataclass(frozen=True)
class JobState:
    name: str
    paused: bool
    last_slot_at: datetime | None


@dataclass(frozen=True)
class Claim:
    outcome: ClaimOutcome
    run_id: int | None = None
    detail: str = ""


class AlreadyRunning(RuntimeError):
    """A manual run was refused because the task is running elsewhere."""


def sync_jobs(specs: Iterable[TaskSpec], now: datetime) -> dict[str, JobState]:
    """Make ScheduledJob rows match the registry; returns the state of every active job.

    A new job is anchored at ``now``: slots before it existed are not caught up.
    ``next_run_at`` is informational (list_tasks, the admin); the worker keeps its own heap.
    """
    specs = list(specs)
    with transaction.atomic():
        for spec in specs:
            job, created = ScheduledJob.objects.get_or_create(
                name=spec.name, defaults={"last_slot_at": now}
            )
            fields = {
                "next_run_at": spec.schedule.next_slot(now) if spec.schedule else None,
                "description": spec.description,
                "schedule": spec.schedule.describe() if spec.schedule else "manual only",
                "tags": list(spec.tags),
                "active": True,
            }
            if created or any(getattr(job, k) != v for k, v in fields.items()):
                ScheduledJob.objects.filter(pk=job.pk).update(**fields, updated_at=now)
        names = [s.name for s in specs]
        gone = ScheduledJob.objects.filter(active=True).exclude(name__in=names).update(active=False)
        if gone:
            logger.info(
                "jobs no longer registered", extra={"event": "cron.jobs_inactive", "count": gone}
            )
        rows = ScheduledJob.objects.filter(name__in=names).values_list(
            "name", "paused", "last_slot_at"
        )
        return {name: JobState(name, paused, last) for name, paused, last in rows}


def recover_abandoned(now: datetime, job_id: int | None = None) -> int:
    """Close running rows whose lease ran out: their worker died (kill -9, power loss)."""
    rows = TaskRun.objects.filter(status=TaskRun.Status.RUNNING, lease_until__lt=now)
    if job_id is not None:
        rows = rows.filter(job_id=job_id)
    count = rows.update(
        status=TaskRun.Status.FAILURE,
        finished_at=now,
        error="abandoned: its worker stopped renewing the lease (killed or lost)",
    )
    if count:
        logger.warning(
            "closed abandoned runs", extra={"event": "cron.runs_abandoned", "count": count}
        )
    return count


_INSERT_RUN = """
    INSERT INTO services_taskrun
        (job_id, slot, source, worker_id, status, attempt, started_at, lease_until,
         finished_at, duration, error, traceback)
    VALUES (%s, %s, %s, %s, %s, 1, %s, %s, %s, %s, %s, '')
    ON CONFLICT (job_id, slot) DO NOTHING
    RETURNING id
"""


def claim_slot(
    name: str,
    slot: datetime | None,
    *,
    source: str,
    worker_id: str,
    now: datetime,
    lease_until: datetime,
    overlap: str,
    force: bool = False,
    next_run_at: datetime | None = None,
) -> Claim:
    """Claim one run of ``name``: exactly one caller wins a (job, slot), across all workers.

    The job row is locked so that two workers deciding about overlap see each other's runs.
    Manual runs (``slot=None``) are refused while another run is alive unless ``force``.
    """
    with transaction.atomic():
        job = ScheduledJob.objects.select_for_update().filter(name=name).first()
        if job is None or not job.active:
            return Claim("inactive")
        if job.paused and source != TaskRun.Source.MANUAL:
            return Claim("paused")
        recover_abandoned(now, job.pk)
        alive = _alive_run(job.pk)
        if slot is not None:
            ScheduledJob.objects.filter(pk=job.pk).update(
                last_slot_at=_later(job.last_slot_at, slot), next_run_at=next_run_at, updated_at=now
            )
        if alive is not None and (overlap == "skip" or slot is None) and not force:
            detail = f"run {alive.pk} by {alive.worker_id or '?'} since {alive.started_at:%H:%M:%S}"
            if slot is None:
                raise AlreadyRunning(f"task {name!r} is already running ({detail})")
            run_id = _insert(job.pk, slot, source, worker_id, now, None, skipped=detail)
            return Claim("skipped" if run_id else "taken", run_id, detail)
        run_id = _insert(job.pk, slot, source, worker_id, now, lease_until)
        return Claim("claimed" if run_id else "taken", run_id)


def _alive_run(job_id: int) -> TaskRun | None:
    return (
        TaskRun.objects.filter(job_id=job_id, status=TaskRun.Status.RUNNING)
        .only("pk", "worker_id", "started_at")
        .first()
    )


def _insert(
    job_id: int,
    slot: datetime | None,
    source: str,
    worker_id: str,
    now: datetime,
    lease_until: datetime | None,
    skipped: str = "",
) -> int | None:
    status = TaskRun.Status.SKIPPED if skipped else TaskRun.Status.RUNNING
    finished, duration = (now, 0.0) if skipped else (None, None)
    error = f"skipped: previous run still running ({skipped})" if skipped else ""
    params = [job_id, slot, source, worker_id, status, now, lease_until, finished, duration, error]
    with connection.cursor() as cursor:
        cursor.execute(_INSERT_RUN, params)
        row = cursor.fetchone()
    return row[0] if row else None


def _later(a: datetime | None, b: datetime) -> datetime:
    return b if a is None or b > a else a


def finish_run(
    run_id: int,
    *,
    status: str,
    now: datetime,
    attempt: int,
    result: Any = None,
    error: str = "",
    traceback: str = "",
) -> bool:
    """Write a run's outcome. False when the row was no longer ours (its lease was lost)."""
    run = TaskRun.objects.filter(pk=run_id).only("started_at").first()
    duration = (now - run.started_at).total_seconds() if run else None
    updated = TaskRun.objects.filter(pk=run_id, status=TaskRun.Status.RUNNING).update(
        status=status,
        finished_at=now,
        duration=duration,
        attempt=attempt,
        result=result,
        error=error[:2000],
        traceback=traceback[-10_000:],
        lease_until=None,
    )
    return bool(updated)


def set_attempt(run_id: int, attempt: int, error: str) -> None:
    TaskRun.objects.filter(pk=run_id, status=TaskRun.Status.RUNNING).update(
        attempt=attempt, error=error[:2000]
    )


def renew_leases(worker_id: str, until: datetime) -> int:
    return TaskRun.objects.filter(worker_id=worker_id, status=TaskRun.Status.RUNNING).update(
        lease_until=until
    )


def take_run_requests() -> list[str]:
    """Names of jobs someone asked to "run now"; each request is taken by one worker only."""
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE services_scheduledjob SET run_requested_at = NULL "
            "WHERE run_requested_at IS NOT NULL AND active RETURNING name"
        )
        return [row[0] for row in cursor.fetchall()]


class AsyncStore:
    """The store for async code: one ORM thread, and a record of the database's health.

    The ORM thread keeps its connection between calls (no connect per run, nothing checked at
    idle). When a call fails because the connection died (the server restarted, the network
    dropped), the connection is discarded and the call made once more on a new one: every
    function here is safe to repeat (a repeated claim finds its slot taken, never runs twice).
    """

    def __init__(self) -> None:
        self.connected: bool | None = None
        self.last_error: str | None = None
        # A thread of our own (not asgiref's shared one): the worker's bookkeeping never queues
        # behind other sync_to_async work, and each store has exactly one connection.
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="worker-orm")

    async def call[**P, R](self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        wrapped = sync_to_async(
            _retry_on_dead_connection(fn), thread_sensitive=False, executor=self._thread
        )
        try:
            result = await wrapped(*args, **kwargs)
        except Exception as exc:
            if _is_connection_error(exc):
                self.connected, self.last_error = False, f"{type(exc).__name__}: {exc}"
            raise
        self.connected = True
        return result

    def health(self) -> dict[str, Any]:
        return {"connected": self.connected, "last_error": self.last_error}

    async def close(self) -> None:
        """Close this store's connection and stop its thread."""
        await sync_to_async(_close_connection, thread_sensitive=False, executor=self._thread)()
        self._thread.shutdown(wait=True)


def _retry_on_dead_connection[**P, R](fn: Callable[P, R]) -> Callable[P, R]:
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if not _is_connection_error(exc) or _still_usable():
                raise
            logger.warning("database connection lost", extra={"event": "db.reconnect"})
            connection.close()
            return fn(*args, **kwargs)

    return run


def _close_connection() -> None:
    connection.close()  # looked up here: ``connection`` is this thread's own


def _still_usable() -> bool:
    return connection.connection is not None and connection.is_usable()


def _is_connection_error(exc: BaseException) -> bool:
    from django.db import InterfaceError, OperationalError

    return isinstance(exc, OperationalError | InterfaceError)
