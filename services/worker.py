"""Assembling and running the worker process: ``manage.py runworker`` calls ``serve``.

The core knows no app. Each app contributes components through an optional
``worker_components(ctx)`` method on its AppConfig; ``ctx`` carries what components share (the
clock, the ORM store, the executor, the one LISTEN connection).
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from django.apps import apps
from django.conf import settings

from services.clock import Clock, RealClock
from services.cron import CronComponent, new_worker_id
from services.dbthread import AsyncStore
from services.execution import Executor
from services.health import HealthServer
from services.listener import Listener
from services.registry import TaskSpec, bind_time_zone, discover
from services.runner import Component, Runner
from services.signals import handle_signals

logger = logging.getLogger(__name__)


class WorkerError(RuntimeError):
    """The worker cannot start as asked (bad component names, invalid schedules, ...)."""


@dataclass
class WorkerContext:
    worker_id: str
    clock: Clock
    db: AsyncStore
    executor: Executor
    listener: Listener
    tasks: list[TaskSpec]
    # Objects several apps' components share in one worker (the status hub, ...), by key.
    shared: dict[str, Any] = field(default_factory=dict)

    def singleton[T](self, key: str, factory: Callable[[], T]) -> T:
        """The object shared under ``key``, made by ``factory`` on first use."""
        if key not in self.shared:
            self.shared[key] = factory()
        found: T = self.shared[key]
        return found


def build_context(clock: Clock | None = None) -> WorkerContext:
    registry = discover()
    problems = registry.problems()
    if problems:
        raise WorkerError("invalid task configuration:\n  " + "\n  ".join(problems))
    tz = ZoneInfo(settings.TIME_ZONE)
    clock = clock or RealClock(max_sleep=settings.WORKER_MAX_SLEEP)
    db = AsyncStore()
    worker_id = new_worker_id()
    executor = Executor(
        db,
        clock,
        worker_id,
        lease=settings.WORKER_RUN_LEASE,
        max_threads=settings.WORKER_TASK_THREADS,
    )
    tasks = [bind_time_zone(spec, tz) for spec in registry]
    return WorkerContext(worker_id, clock, db, executor, Listener(), tasks)


def available_components(ctx: WorkerContext) -> dict[str, Component]:
    """Every component the installed apps offer, by name."""
    found: dict[str, Component] = {}
    for config in apps.get_app_configs():
        contribute = getattr(config, "worker_components", None)
        for component in contribute(ctx) if contribute else ():
            if component.name in found:
                raise WorkerError(f"two apps offer a worker component named {component.name!r}")
            found[component.name] = component
    return found


def select(
    available: dict[str, Component], only: Iterable[str] = (), exclude: Iterable[str] = ()
) -> list[Component]:
    only, exclude = set(only), set(exclude)
    unknown = (only | exclude) - set(available)
    if unknown:
        raise WorkerError(
            f"unknown component(s): {', '.join(sorted(unknown))}; "
            f"available: {', '.join(sorted(available))}"
        )
    names = [n for n in available if (not only or n in only) and n not in exclude]
    if not names:
        raise WorkerError("no component left to run")
    return [available[n] for n in names]


async def serve(only: Iterable[str] = (), exclude: Iterable[str] = ()) -> int:
    """Run the chosen components until SIGTERM/SIGINT; returns the exit code."""
    ctx = build_context()
    components: list[Component] = [ctx.listener, *select(available_components(ctx), only, exclude)]
    runner = Runner(components, grace=settings.WORKER_SHUTDOWN_GRACE)
    # What start-up made (Django, the apps, ~90,000 objects) lives as long as the process: out
    # of the collector's full passes, which otherwise stall the loop ~20-40 ms each (timers).
    gc.freeze()

    def snapshot() -> dict[str, Any]:
        return {"worker_id": ctx.worker_id, "db": ctx.db.health(), **runner.snapshot()}

    health = HealthServer(
        snapshot,
        asyncio.get_running_loop(),
        host=settings.WORKER_HEALTH_HOST,
        port=settings.WORKER_HEALTH_PORT,
    )
    health.start()
    try:
        with handle_signals(runner):
            return await runner.run()
    finally:
        health.stop()
        await ctx.db.close()


async def run_once() -> int:
    """Run every due job once, then exit: 0 if all succeeded, 1 otherwise."""
    ctx = build_context()
    cron = CronComponent(ctx.tasks, ctx.db, ctx.executor, ctx.clock)
    try:
        outcomes = await cron.run_once(asyncio.Event())
    finally:
        await ctx.db.close()
    failed = [o for o in outcomes if o is not None and o.status != "success"]
    logger.info(
        "ran due jobs once",
        extra={"event": "cron.once_done", "runs": sum(o is not None for o in outcomes)},
    )
    return 1 if failed else 0
