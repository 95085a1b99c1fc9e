"""The jobs and runs the status page shows, read once per change for every socket of a process.

A change to jobs or runs (``services.run_signals.task_run_changed``, sent after commit in the
worker, ``run_task`` or the admin) is pushed as a *hint* (``broadcast.task_runs_changed``:
no data, so the sender issues no query). Each web process's relay hands hints to its
``SummaryFeed``, which reads the summary once (two queries) and sends the result, a
``task_runs`` message, to every socket the process holds. A burst of hints becomes one read:
the feed waits ``window`` seconds after the first, and hints that arrive while a read is
under way make one more read after it, not one each. No socket open: no relay, no read.

Why here and not in the sender, or in the page: a page that re-fetched the summary on every
hint would cost two queries per open page per change (and an HTTP request each); the sender
reading it would cost two queries per change even when nobody watches. Here it is two per
web process with a socket open, per burst.

``summary_message()`` is also what ``/status/summary.json`` answers, which the page reads
after every (re)connect. Its number is taken BEFORE the read (like ``alarm_state``), so of a
push and a fetch that race, the one with the larger number shows the newer state.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from django.db.models import F

from realtime import broadcast, sequence
from services.models import ScheduledJob, TaskRun
from services.ratelimit_log import RateLimitedLog

logger = logging.getLogger(__name__)
_log = RateLimitedLog(logger)

KIND = "task_runs"
NEXT_JOBS = 10
RECENT_RUNS = 15
WINDOW = 0.05  # seconds a feed waits after a hint for the rest of its burst

Deliver = Callable[[list[list[Any]]], Awaitable[None]]


def summary() -> dict[str, Any]:
    """The next scheduled jobs and the latest task runs (two queries)."""
    jobs = (
        ScheduledJob.objects.filter(active=True)
        .order_by(F("next_run_at").asc(nulls_last=True), "name")
        .values("name", "schedule", "paused", "next_run_at")[:NEXT_JOBS]
    )
    runs = TaskRun.objects.select_related("job").order_by("-started_at")[:RECENT_RUNS]
    return {
        "jobs": [
            {**job, "next_run_at": job["next_run_at"].isoformat() if job["next_run_at"] else None}
            for job in jobs
        ],
        "runs": [
            {
                "task": run.job.name,
                "status": run.status,
                "source": run.source,
                "started_at": run.started_at.isoformat(),
                "duration": run.duration,
                "error": run.error,
            }
            for run in runs
        ],
    }


def summary_message() -> dict[str, Any]:
    """The summary as a ``task_runs`` client message, numbered before the read."""
    number = sequence.next_sequence()
    return broadcast.message(KIND, summary(), sequence=number)


async def read_summary_message() -> dict[str, Any]:
    from channels.db import database_sync_to_async

    message: dict[str, Any] = await database_sync_to_async(summary_message)()
    return message


class SummaryFeed:
    """Hints in, one summary read per burst out (see the module docstring)."""

    def __init__(
        self,
        deliver: Deliver,
        *,
        read: Callable[[], Awaitable[dict[str, Any]]] = read_summary_message,
        window: float = WINDOW,
    ) -> None:
        self._deliver, self._read, self.window = deliver, read, window
        self._dirty = False
        self._task: asyncio.Task[None] | None = None
        self.hints = self.reads = self.failures = 0

    def changed(self) -> None:
        """A hint arrived (on the event loop): read soon, once for the whole burst."""
        self.hints += 1
        self._dirty = True
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run())

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self._dirty = False

    async def idle(self) -> None:
        """Return once no read is pending or under way (tests)."""
        while self._task is not None and not self._task.done():
            await asyncio.wait({self._task})

    async def _run(self) -> None:
        while self._dirty:
            if self.window > 0:
                await asyncio.sleep(self.window)  # the rest of the burst arrives meanwhile
            self._dirty = False
            try:
                message = await self._read()
            except Exception as exc:  # the database is away: the next hint tries again
                self.failures += 1
                _log.record(
                    "realtime.summary_failed", "cannot read the jobs and runs", error=repr(exc)
                )
                continue
            self.reads += 1
            text = json.dumps(message, default=str)
            await self._deliver([[KIND, message["sequence"], text]])
