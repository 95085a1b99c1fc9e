"""The alarm panel's doors: commands go through the pure state machine and are recorded.

Every change of state writes the state row, one AlarmEvent (``state_from`` -> ``state_to``)
and, on commit, sends ``alarm_state_changed`` with the snapshot. Entering ``triggered``
enqueues the trigger message to every enabled notification provider (when the outbox is
installed and the settings say so); a disarm cancels the pending actions scheduled while the
panel was armed. The row is locked for the whole command, so two commands never interleave.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from alarm import signals, state_machine
from alarm.models import AlarmEvent, AlarmSettings, AlarmState, PendingAction
from alarm.models.panel import SINGLETON_ID, snapshot_of
from alarm.state_machine import Command, DelayElapsed, Outcome, Transition

logger = logging.getLogger(__name__)

_EVENT_OF_STATE = {
    state_machine.DISARMED: AlarmEvent.EventType.DISARMED,
    state_machine.ARMING: AlarmEvent.EventType.ARMING,
    state_machine.PENDING: AlarmEvent.EventType.PENDING,
    state_machine.TRIGGERED: AlarmEvent.EventType.TRIGGERED,
    **{mode: AlarmEvent.EventType.ARMED for mode in state_machine.ARMED_MODES},
}


def snapshot() -> dict[str, Any]:
    """``alarm_state_snapshot()``: one query; disarmed when no state row exists yet."""
    row = (
        AlarmState.objects.filter(pk=SINGLETON_ID)
        .values_list(
            "state", "previous_state", "changed_at", "delay_kind", "delay_until", "delay_seconds"
        )
        .first()
    )
    if row is None:
        return snapshot_of(state_machine.DISARMED, "", None, "", None, None)
    return snapshot_of(*row)


def command(cmd: Command, *, source: str, at: datetime | None = None) -> Outcome:
    """Apply ``cmd`` at ``at`` (default now); returns the machine's outcome."""
    now = at or timezone.now()
    with transaction.atomic(savepoint=False):
        row = _locked_row(now)
        settings = AlarmSettings.current()
        outcome = state_machine.decide(row.status(), cmd, now, settings.delays())
        if isinstance(outcome, Transition):
            _apply(row, outcome, now, source, settings)
    return outcome


def arm(mode: str, *, source: str = "manual", at: datetime | None = None) -> Outcome:
    return command(state_machine.Arm(mode), source=source, at=at)


def disarm(*, source: str = "manual", at: datetime | None = None) -> Outcome:
    return command(state_machine.Disarm(), source=source, at=at)


def trip(*, source: str = "manual", at: datetime | None = None) -> Outcome:
    return command(state_machine.Trip(), source=source, at=at)


def trigger(*, source: str = "manual", at: datetime | None = None) -> Outcome:
    return command(state_machine.Trigger(), source=source, at=at)


def complete_delay(until: datetime, now: datetime, source: str = "timer") -> Outcome:
    """The worker's ``alarm`` timer: the delay ending at ``until`` is over (always completes).

    ``now`` is at least ``until`` (the worker waited for it by elapsed time, even if the wall
    clock was stepped back since).
    """
    return command(DelayElapsed(until), source=source, at=max(now, until))


def _locked_row(now: datetime) -> AlarmState:
    row, _ = AlarmState.objects.select_for_update().get_or_create(
        pk=SINGLETON_ID, defaults={"changed_at": now}
    )
    return row


def _apply(
    row: AlarmState, transition: Transition, now: datetime, source: str, settings: AlarmSettings
) -> None:
    status, previous = transition.status, transition.previous
    row.previous_state, row.state = previous.state, status.state
    row.target_state = status.target
    row.changed_at, row.changed_by = now, source[:200]
    delay = status.delay
    row.delay_kind = delay.kind if delay else ""
    row.delay_until = delay.until if delay else None
    row.delay_seconds = delay.seconds if delay else None
    row.save()
    AlarmEvent.objects.create(
        event_type=_EVENT_OF_STATE[status.state],
        state_from=previous.state,
        state_to=status.state,
        message=transition.reason,
        data={"source": source, **({"target": status.target} if status.target else {})},
        timestamp=now,
    )
    if status.state == state_machine.TRIGGERED and settings.notify_on_trigger:
        _notify_triggered(settings.trigger_message, now, source)
    if status.state == state_machine.DISARMED:
        _cancel_armed_pending(now)
    snap = row.snapshot()
    extra = {"event": "alarm.state_changed", "state_from": previous.state,
             "state_to": status.state, "source": source}  # fmt: skip

    def committed() -> None:
        logger.info("alarm state changed", extra=extra)
        signals.alarm_state_changed.send(sender=AlarmState, snapshot=snap)

    transaction.on_commit(committed, robust=True)  # a failing receiver is logged, not raised


def _notify_triggered(message: str, now: datetime, source: str) -> None:
    from alarm.action_runner import ActionFailed, notify

    key = f"alarm-triggered-{now.timestamp():.6f}"
    try:
        notify(
            {"type": "notify", "message": message, "title": "Alarm"},
            {"alarm": "triggered", "source": source},
            key,
        )
    except ActionFailed as exc:
        logger.warning(
            "could not notify the trigger",
            extra={"event": "alarm.trigger_notify_failed", "error": str(exc)},
        )


def _cancel_armed_pending(now: datetime) -> int:
    from alarm.rule_engine import cancel_pending

    cancelled = cancel_pending(PendingAction.objects.filter(while_armed=True), "disarmed", now)
    if cancelled:
        logger.info(
            "pending actions cancelled by disarm",
            extra={"event": "alarm.pending_cancelled", "count": cancelled, "reason": "disarmed"},
        )
    return cancelled
