"""Receivers of the alarm app's signals and of the services core's ``task_run_changed``: each
pushes what it is given.

The signals are sent from ``transaction.on_commit``, in whichever process made the change;
a receiver only hands the message to the publisher thread, so the sender never waits on
Redis, never issues a query for it, and never sees an exception from here.
"""

from __future__ import annotations

import logging
from typing import Any

from realtime import broadcast

logger = logging.getLogger(__name__)


def on_alarm_state_changed(sender: Any = None, *, snapshot: dict[str, Any], **_: Any) -> None:
    """``alarm_state_changed(snapshot=<alarm_state_snapshot() dict>)`` -> an alarm_state push."""
    try:
        broadcast.alarm_state(snapshot)
    except Exception:
        logger.exception("alarm_state push failed", extra={"event": "realtime.receiver_failed"})


def on_entity_state_changed(sender: Any = None, *, entity: dict[str, Any], **_: Any) -> None:
    """``entity_state_changed(entity={entity_id, domain, ...})`` -> an entity_state push."""
    try:
        broadcast.entity_state(entity)
    except Exception:
        logger.exception("entity_state push failed", extra={"event": "realtime.receiver_failed"})


def on_task_run_changed(
    sender: Any = None, *, reason: str = "", jobs: tuple[str, ...] = (), **_: Any
) -> None:
    """``task_run_changed(reason, jobs)`` -> a hint; each web process reads the runs once."""
    try:
        broadcast.task_runs_changed(reason, jobs)
    except Exception:
        logger.exception("task_runs hint failed", extra={"event": "realtime.receiver_failed"})


def connect_run_signals() -> None:
    from services.run_signals import task_run_changed

    task_run_changed.connect(on_task_run_changed, dispatch_uid="realtime.on_task_run_changed")


def connect_alarm_signals() -> None:
    """Connect both receivers to the alarm app's signals (idempotent: dispatch_uid)."""
    from alarm import signals

    signals.alarm_state_changed.connect(
        on_alarm_state_changed, dispatch_uid="realtime.on_alarm_state_changed"
    )
    signals.entity_state_changed.connect(
        on_entity_state_changed, dispatch_uid="realtime.on_entity_state_changed"
    )
