"""The cron core's SQL besides claims (``services.claims``): job sync, run results, leases.

Synchronous ORM code; async callers go through ``services.dbthread.AsyncStore``. A write that
changes what the status page shows announces it after its commit (``services.run_signals``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection, transaction

from services import run_signals
from services.claims import ABANDONED
from services.models import ScheduledJob, TaskRun
from services.registry import TaskSpec

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobState:
    name: str
    paused: bool
    last_slot_at: datetime | None


def sync_jobs(specs: Iterable[TaskSpec], now: datetime) -> dict[str, JobState]:
    """Make ScheduledJob rows match the registry; returns the state of every active job.

    A new job is anchored at ``now``: slots before it existed are not caught up.
    ``next_run_at`` is informational (list_tasks, the admin); the worker keeps its own heap.
    """
    specs = list(specs)
    changed: list[str] = []
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
                changed.append(spec.name)
        names = [s.name for s in specs]
        gone = ScheduledJob.objects.filter(active=True).exclude(name__in=names).update(active=False)
        if gone:
            logger.info(
                "jobs no longer registered", extra={"event": "cron.jobs_inactive", "count": gone}
            )
        if changed or gone:
            run_signals.announce("synced", changed)
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
        error=ABANDONED,
    )
    if count:
        logger.warning(
            "closed abandoned runs", extra={"event": "cron.runs_abandoned", "count": count}
        )
        run_signals.announce("abandoned")
    return count


_FINISH_RUN = """
    UPDATE services_taskrun
    SET status = %s, finished_at = %s, duration = EXTRACT(EPOCH FROM (%s - started_at)),
        attempt = %s, result = %s::jsonb, error = %s, traceback = %s, lease_until = NULL
    WHERE id = %s AND status = 'running'
"""


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
    encoded = None if result is None else json.dumps(result)
    params: list[Any] = [
        status,
        now,
        now,
        attempt,
        encoded,
        error[:2000],
        traceback[-10_000:],
        run_id,
    ]
    with connection.cursor() as cursor:
        cursor.execute(_FINISH_RUN, params)
        finished = cursor.rowcount == 1
    if finished:
        run_signals.announce("finished")
    return finished


def set_attempt(run_id: int, attempt: int, error: str) -> None:
    updated = TaskRun.objects.filter(pk=run_id, status=TaskRun.Status.RUNNING).update(
        attempt=attempt, error=error[:2000]
    )
    if updated:
        run_signals.announce("retrying")


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
