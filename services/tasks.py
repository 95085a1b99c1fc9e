"""Maintenance tasks of the worker's own tables, and the helpers every cleanup task shares.

Every cleanup measures "older than N days" from the slot it runs for, not from the clock: a
catch-up run after downtime deletes exactly what the missed slot would have deleted.
Deletes go in batches of ``DELETE_BATCH_SIZE`` ids, each its own statement, so a cleanup of a
huge table never holds its row locks for long.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from importlib import import_module
from typing import Any

from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils import timezone

from services import run_signals
from services.models import ScheduledJob, TaskRun
from services.registry import task
from services.runtime_settings import declare, get_value
from services.schedules import DailyAt

logger = logging.getLogger(__name__)

DELETE_BATCH_SIZE = 5000
MAINTENANCE_TAGS = ("maintenance",)
# Engines whose expired sessions live in django_session and can be counted as they go.
DATABASE_SESSION_ENGINES = {
    "django.contrib.sessions.backends.db",
    "django.contrib.sessions.backends.cached_db",
}

TASK_RUNS_RETENTION = declare(
    "retention.task_runs_days",
    30,
    "Days of task run history to keep. <= 0: no age limit.",
)
TASK_RUNS_KEPT_PER_TASK = declare(
    "retention.task_runs_max_per_task",
    500,
    "At most this many runs are kept per task (the newest). <= 0: no cap.",
)


def resolve_slot(slot: datetime | None) -> datetime:
    """The slot a cleanup measures from; a manual run without one measures from now."""
    if slot is None:
        return timezone.now()
    if timezone.is_naive(slot):
        raise ValueError(f"slot must be timezone-aware, got naive {slot.isoformat()}")
    return slot


def delete_in_batches(queryset: QuerySet[Any]) -> int:
    """Delete every row of ``queryset``, ``DELETE_BATCH_SIZE`` ids per statement; the count."""
    label = queryset.model._meta.label
    deleted = 0
    while True:
        ids = list(queryset.order_by().values_list("pk", flat=True)[:DELETE_BATCH_SIZE])
        if not ids:
            return deleted
        # Re-applying the filter means a row that stopped matching since the SELECT survives.
        _, per_model = queryset.filter(pk__in=ids).delete()
        batch = per_model.get(label, 0)
        deleted += batch
        if batch == 0 or len(ids) < DELETE_BATCH_SIZE:
            return deleted


def delete_older_than(
    task_name: str, setting_key: str, queryset: QuerySet[Any], field: str, slot: datetime
) -> dict[str, Any]:
    """The whole of a plain retention cleanup: rows whose ``field`` is before slot - N days."""
    days = get_value(setting_key)
    if days <= 0:
        return cleanup_skipped(task_name, setting_key)
    cutoff = slot - timedelta(days=days)
    deleted = delete_in_batches(queryset.filter(**{f"{field}__lt": cutoff}))
    return cleanup_done(task_name, deleted, cutoff=cutoff.isoformat(), retention_days=days)


def cleanup_done(task_name: str, deleted: int, **details: Any) -> dict[str, Any]:
    """Log the one line a cleanup run writes and build its result."""
    logger.info(
        "%s deleted %d rows",
        task_name,
        deleted,
        extra={"event": "cleanup.done", "task": task_name, "deleted": deleted, **details},
    )
    return {"deleted": deleted, **details}


def cleanup_skipped(task_name: str, setting_key: str) -> dict[str, Any]:
    logger.info(
        "%s skipped: %s <= 0",
        task_name,
        setting_key,
        extra={"event": "cleanup.skipped", "task": task_name, "setting": setting_key},
    )
    return {"skipped": "retention disabled", "setting": setting_key}


@task(DailyAt(3, 15), tags=MAINTENANCE_TAGS, retries=2, timeout=600)
def cleanup_task_runs(slot: datetime | None = None) -> dict[str, Any]:
    """Delete task runs older than the retention, and each task's runs beyond its newest N."""
    slot = resolve_slot(slot)
    days = get_value(TASK_RUNS_RETENTION.key)
    kept_per_task = get_value(TASK_RUNS_KEPT_PER_TASK.key)
    if days <= 0 and kept_per_task <= 0:
        return cleanup_skipped("cleanup_task_runs", TASK_RUNS_RETENTION.key)
    cutoff = slot - timedelta(days=days) if days > 0 else None
    deleted = 0
    for job_id in ScheduledJob.objects.order_by("pk").values_list("pk", flat=True):
        deleted += delete_in_batches(_deletable_runs(job_id, cutoff, kept_per_task))
    if deleted:
        run_signals.announce("deleted")
    return cleanup_done(
        "cleanup_task_runs",
        deleted,
        cutoff=cutoff.isoformat() if cutoff else None,
        retention_days=days,
        kept_per_task=kept_per_task,
    )


def _deletable_runs(job_id: int, cutoff: datetime | None, kept_per_task: int) -> QuerySet[TaskRun]:
    """Runs of one job started before ``cutoff`` or past its newest ``kept_per_task``.

    Either limit is off when unset/<= 0. A running row is never deleted: its worker is about
    to write its outcome into it.
    """
    runs = TaskRun.objects.filter(job_id=job_id)
    too_old = Q(started_at__lt=cutoff) if cutoff else Q(pk__in=[])
    beyond_cap = Q(pk__in=[])
    if kept_per_task > 0:
        # The oldest row still among the newest kept_per_task; (started_at, pk) breaks ties.
        newest = runs.order_by("-started_at", "-pk").values_list("started_at", "pk")
        boundary = list(newest[kept_per_task - 1 : kept_per_task])
        if boundary:
            started_at, pk = boundary[0]
            beyond_cap = Q(started_at__lt=started_at) | Q(started_at=started_at, pk__lt=pk)
    return runs.filter(too_old | beyond_cap).exclude(status=TaskRun.Status.RUNNING)


@task(DailyAt(4, 0), tags=MAINTENANCE_TAGS, retries=2, timeout=600)
def cleanup_expired_sessions(slot: datetime | None = None) -> dict[str, Any]:
    """Delete login sessions that had expired by the slot."""
    slot = resolve_slot(slot)
    if settings.SESSION_ENGINE not in DATABASE_SESSION_ENGINES:
        # Cache and cookie engines expire on their own; the file engine needs its sweep.
        import_module(settings.SESSION_ENGINE).SessionStore.clear_expired()
        return cleanup_done("cleanup_expired_sessions", 0, engine=settings.SESSION_ENGINE)
    from django.contrib.sessions.models import Session

    deleted = delete_in_batches(Session.objects.filter(expire_date__lt=slot))
    return cleanup_done("cleanup_expired_sessions", deleted, cutoff=slot.isoformat())
