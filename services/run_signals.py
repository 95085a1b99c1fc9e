"""``task_run_changed``: what the status page shows of jobs and runs has changed.

The core knows no app, so it only sends this signal; whoever shows runs connects a receiver
(the realtime app pushes to WebSocket clients). It is sent after the change commits (at once
in autocommit mode), in whichever process made it: the worker (claims, outcomes, retries,
abandoned runs closed, the job sync at start, the run-history cleanup), ``manage.py run_task``
and the admin (pause, resume, an edited job). A rolled-back change sends nothing.

Receivers get ``reason`` (one of ``REASONS``) and ``jobs`` (the names concerned when the
writer knows them, else empty). They must be quick and must not touch the database on the
sender's thread: the worker's bookkeeping thread is one of the senders. An exception in a
receiver is logged (``services.run_signal_failed``) and never reaches the writer.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from django.db import transaction
from django.dispatch import Signal

logger = logging.getLogger(__name__)

REASONS = frozenset(
    {
        "claimed",  # runs created (running or skipped), jobs' next run advanced
        "finished",  # a run's outcome written
        "retrying",  # a running run's attempt and error updated before its next attempt
        "abandoned",  # runs whose worker died closed as failed
        "synced",  # job rows made to match the registry (new, changed, inactive)
        "paused",
        "resumed",
        "edited",  # a job row saved in the admin
        "deleted",  # old runs deleted by the cleanup task
    }
)

task_run_changed = Signal()


def announce(reason: str, jobs: Iterable[str] = (), *, using: str | None = None) -> None:
    """Send ``task_run_changed`` once the current transaction commits."""
    if reason not in REASONS:
        raise ValueError(f"unknown reason {reason!r}; known: {', '.join(sorted(REASONS))}")
    names = tuple(jobs)
    transaction.on_commit(lambda: _send(reason, names), using=using)


def _send(reason: str, jobs: tuple[str, ...]) -> None:
    for receiver, result in task_run_changed.send_robust(sender=None, reason=reason, jobs=jobs):
        if isinstance(result, Exception):
            logger.warning(
                "a task_run_changed receiver failed",
                exc_info=result,
                extra={"event": "services.run_signal_failed", "receiver": repr(receiver)},
            )
