"""What the maintenance commands do: find tasks, read their state, run one by hand.

``manage.py run_task`` runs a task in its own process, but records the run exactly as the
worker would (a claimed TaskRun with source "manual", the same Executor: timeout, retries,
final write), so the history and the overlap rules do not depend on who started a run.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings

from services import claims, run_signals
from services.clock import RealClock
from services.cron import new_worker_id
from services.dbthread import AsyncStore
from services.describe import JobView
from services.execution import Executor, Outcome
from services.models import ScheduledJob, TaskRun
from services.registry import TaskSpec, bind_time_zone, discover

logger = logging.getLogger(__name__)


class RunRefused(RuntimeError):
    """The run was not started (already running, disabled, job inactive); the message says why."""


@dataclass(frozen=True)
class ManualRun:
    run_id: int
    outcome: Outcome
    seconds: float


# --- finding tasks -----------------------------------------------------------------------------


def local_zone() -> ZoneInfo:
    return ZoneInfo(settings.TIME_ZONE)


def registered(names: list[str] | None = None, tag: str | None = None) -> list[TaskSpec]:
    """The registered tasks (all, or ``names`` in that order), schedules bound to TIME_ZONE.

    Raises UnknownTask for a name that is not registered.
    """
    registry, zone = discover(), local_zone()
    specs = [registry.get(name) for name in names] if names else list(registry)
    if tag is not None:
        specs = [spec for spec in specs if tag in spec.tags]
    return [bind_time_zone(spec, zone) for spec in specs]


def known_tags() -> list[str]:
    return sorted({tag for spec in discover() for tag in spec.tags})


def enabled_state(spec: TaskSpec) -> str:
    """ "yes" / "no" from the task's enabled_when predicate; "error: ..." when it raises."""
    try:
        return "yes" if spec.is_enabled() else "no"
    except Exception as exc:
        return f"error: {type(exc).__name__}: {exc}"


def job_views(names: list[str]) -> dict[str, JobView]:
    """The job row and latest run of each task that has a row: two queries, whatever the count."""
    jobs = list(
        ScheduledJob.objects.filter(name__in=names).values_list("pk", "name", "paused", "active")
    )
    # DISTINCT ON (job_id) with the newest first: one latest row per job, from the job index.
    latest = (
        TaskRun.objects.filter(job_id__in=[pk for pk, *_ in jobs])
        .order_by("job_id", "-started_at")
        .distinct("job_id")
        .values_list("job_id", "started_at", "status")
    )
    runs = {job_id: (started_at, status) for job_id, started_at, status in latest}
    return {
        name: JobView(paused, active, *runs.get(pk, (None, "")))
        for pk, name, paused, active in jobs
    }


# --- arguments ---------------------------------------------------------------------------------


def parse_kwargs(pairs: list[str]) -> dict[str, Any]:
    """``key=value`` strings as keyword arguments; a value is JSON when it parses, else text."""
    kwargs: dict[str, Any] = {}
    for pair in pairs:
        key, equals, text = pair.partition("=")
        key = key.strip()
        if not equals or not key.isidentifier():
            raise ValueError(f"--arg {pair!r} must be key=value with a Python name as key")
        if key in kwargs:
            raise ValueError(f"--arg {key!r} is given twice")
        if key == "slot":
            raise ValueError("--arg slot is not accepted: a manual run's slot is now")
        try:
            kwargs[key] = json.loads(text)
        except ValueError:
            kwargs[key] = text
    return kwargs


def check_arguments(spec: TaskSpec, kwargs: dict[str, Any]) -> None:
    """Refuse arguments the function cannot take before a run is recorded."""
    passed = {**kwargs, "slot": None} if spec.wants_slot else kwargs
    try:
        inspect.signature(spec.func).bind(**passed)
    except TypeError as exc:
        params = [p for p in inspect.signature(spec.func).parameters if p != "slot"]
        takes = ", ".join(params) if params else "no arguments"
        raise ValueError(f"task {spec.name!r}: {exc}; it takes: {takes}") from None


# --- a run by hand -----------------------------------------------------------------------------


def ensure_job(spec: TaskSpec, now: datetime) -> None:
    """Make ``spec``'s job row exist and be active, touching no other row.

    ``store.sync_jobs`` is not used: given one spec it would mark every other job inactive.
    A new row is anchored at ``now`` like the worker's sync, so no slot before it is caught up.
    """
    fields = {
        "description": spec.description,
        "schedule": spec.schedule.describe() if spec.schedule else "manual only",
        "tags": list(spec.tags),
        "active": True,
    }
    job, created = ScheduledJob.objects.get_or_create(
        name=spec.name, defaults={**fields, "last_slot_at": now}
    )
    if not created and not job.active:
        # This process has the task: the row was deactivated by a worker running other code.
        ScheduledJob.objects.filter(pk=job.pk).update(**fields, updated_at=now)
        logger.info(
            "job reactivated for a manual run",
            extra={"event": "manual.job_reactivated", "task": spec.name},
        )
    if created or not job.active:
        run_signals.announce("synced", [spec.name])


async def run_by_hand(spec: TaskSpec, kwargs: dict[str, Any], *, force: bool) -> ManualRun:
    """Claim a manual run of ``spec``, execute it here, and record it. Raises RunRefused."""
    db, clock, worker_id = AsyncStore(), RealClock(), new_worker_id()
    try:
        # On the store's thread: a predicate may query, and that thread's connection is closed.
        enabled = await db.call(enabled_state, spec)
        if enabled != "yes" and not force:
            raise RunRefused(
                f"task {spec.name!r} is disabled (enabled_when: {enabled}); "
                "use --force to run anyway"
            )
        now = clock.now()
        await db.call(ensure_job, spec, now)
        run_id = await _claim(db, spec, worker_id, now, force)
        if spec.wants_slot:
            kwargs = {**kwargs, "slot": now}
        executor = Executor(db, clock, worker_id, lease=settings.WORKER_RUN_LEASE, max_threads=1)
        started = clock.monotonic()
        outcome = await executor.execute(spec, run_id, kwargs, asyncio.Event())
        return ManualRun(run_id, outcome, clock.monotonic() - started)
    finally:
        await db.close()


async def _claim(db: AsyncStore, spec: TaskSpec, worker_id: str, now: datetime, force: bool) -> int:
    try:
        claim = await db.call(
            claims.claim_slot,
            claims.ClaimRequest(spec.name, None, TaskRun.Source.MANUAL, spec.overlap),
            worker_id=worker_id,
            now=now,
            lease_until=now + timedelta(seconds=settings.WORKER_RUN_LEASE),
            force=force,
        )
    except claims.AlreadyRunning as exc:
        raise RunRefused(f"{exc}; use --force to run anyway") from None
    if claim.outcome != "claimed" or claim.run_id is None:
        raise RunRefused(f"task {spec.name!r} could not be claimed ({claim.outcome})")
    logger.info(
        "manual run claimed",
        extra={"event": "manual.claimed", "task": spec.name, "run": claim.run_id},
    )
    return claim.run_id
