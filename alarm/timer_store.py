"""The alarm timers' ORM path: what the worker fires through the same code as the web does.

Synchronous ORM code, run on the timer component's own ORM thread (``AsyncStore``). Each timer
fires in a transaction of its own: a conditional claim (the row is still scheduled no later
than the due time the worker waited for, under a row lock), the action, the final state. A
timer whose transaction fails on a database error other than a lost connection is marked
``failed`` with the error in a second transaction, so one bad row never blocks the others; a
lost connection propagates (the component retries those timers later). Every function is safe
to repeat: a repeated claim finds the row taken.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from django.db import DatabaseError, InterfaceError, OperationalError, transaction

from alarm import panel, rule_engine, timer_policy
from alarm.action_runner import ActionFailed, execute
from alarm.actions import action_errors
from alarm.models import PendingAction
from alarm.state_machine import NoChange, Refused, Transition

logger = logging.getLogger(__name__)

Item = tuple[str, int, datetime, float]  # (kind, id, due, seconds late by elapsed time)


def fire(items: list[Item], worker: str, now: Callable[[], datetime]) -> list[tuple[Item, str]]:
    """Fire each timer; returns ``(item, outcome)`` pairs. ``now`` reads the worker's clock."""
    outcomes = []
    for item in items:
        try:
            outcome = _fire_one(item, worker, now)
        except (OperationalError, InterfaceError):
            raise
        except DatabaseError as exc:
            outcome = _failed(item, exc, now())
        outcomes.append((item, outcome))
    return outcomes


def _fire_one(item: Item, worker: str, now: Callable[[], datetime]) -> str:
    kind, row_id, due, late = item
    if kind == timer_policy.ACTION:
        return fire_pending_action(row_id, due, now(), worker, late)
    if kind == timer_policy.RUNTIME:
        return rule_engine.fire_runtime(row_id, due, now(), late)
    return _alarm_outcome(panel.complete_delay(due, now()))


def _alarm_outcome(outcome: Transition | Refused | NoChange) -> str:
    if isinstance(outcome, Transition):
        return outcome.state
    return "gone"


def fire_pending_action(
    action_id: int, due: datetime, now: datetime, worker: str, late: float = 0.0
) -> str:
    """Claim and run one pending action; returns fired / failed / stale / disabled / gone.

    ``late``: seconds past its deadline by elapsed time (the stale policy's measure).
    """
    with transaction.atomic():
        pending = (
            PendingAction.objects.select_for_update(of=("self",))
            .select_related("rule")
            .filter(pk=action_id, status=PendingAction.Status.SCHEDULED, fire_at__lte=due)
            .first()
        )
        if pending is None:
            return "gone"
        pending.finished_at = now
        if pending.rule_id is not None and not (pending.rule and pending.rule.enabled):
            return _cancel(pending, "disabled", "rule disabled or deleted")
        if timer_policy.verdict(timer_policy.ACTION, late) == "stale":
            reason = f"stale: {round(late)} s late (no worker ran when it was due)"
            return _cancel(pending, "stale", reason)
        problems = action_errors([pending.action])
        try:
            if problems:
                raise ActionFailed("; ".join(str(p) for p in problems))
            pending.result = execute(
                pending.action,
                now,
                origin=f"pending action {pending.pk}",
                data={"rule": pending.rule_id, "pending_action": pending.pk},
                idempotency_key=f"pending-action-{pending.pk}",
            )
        except ActionFailed as exc:
            pending.status, pending.error = PendingAction.Status.FAILED, str(exc)
        else:
            pending.status, pending.fired_by = PendingAction.Status.FIRED, worker[:200]
        pending.save(update_fields=["status", "finished_at", "fired_by", "result", "error"])
        return str(pending.status)


def _cancel(pending: PendingAction, outcome: str, reason: str) -> str:
    pending.status, pending.reason = PendingAction.Status.CANCELLED, reason[:200]
    pending.save(update_fields=["status", "reason", "finished_at"])
    return outcome


def _failed(item: Item, exc: DatabaseError, now: datetime) -> str:
    """The timer's transaction failed: record why, without blocking the other timers."""
    kind, row_id, *_ = item
    logger.error(
        "timer failed",
        exc_info=exc,
        extra={"event": "alarm.timer_failed", "kind": kind, "id": row_id},
    )
    if kind == timer_policy.ACTION:
        PendingAction.objects.filter(pk=row_id, status=PendingAction.Status.SCHEDULED).update(
            status=PendingAction.Status.FAILED, error=f"{type(exc).__name__}: {exc}"[:2000],
            finished_at=now,
        )  # fmt: skip
    return "failed"
