"""Running rule actions: the immediate ones now, the delayed ones as pending actions.

ORM code, inside the caller's transaction, so an action and whatever recorded it commit
together. An action that cannot run (a provider deleted since the rule was saved, a refused
alarm command) is reported in its result and does not stop the others; only a database error
propagates (it aborts the transaction, and the caller decides).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.apps import apps

from alarm.actions import EMIT_EVENT, NOTIFY, SET_ALARM_STATE, delay_of
from alarm.models import AlarmEvent, AlarmState, PendingAction, Rule
from alarm.state_machine import ARMED_MODES, DISARMED, PENDING, TRIGGERED, is_armed

logger = logging.getLogger(__name__)


class ActionFailed(Exception):
    """An action could not run; the message says why (kept in its result)."""


def run_actions(
    rule: Rule, actions: list[dict[str, Any]], now: datetime, *, source: str
) -> tuple[list[dict[str, Any]], list[str]]:
    """Run or schedule each action; returns (one result per action, error messages)."""
    results: list[dict[str, Any]] = []
    errors: list[str] = []
    delayed: list[PendingAction] = []
    for index, action in enumerate(actions):
        delay = delay_of(action)
        if delay:
            delayed.append(_pending(rule, action, now + timedelta(seconds=delay)))
            results.append({"type": action["type"], "scheduled": True, "delay_seconds": delay})
            continue
        try:
            detail = execute(action, now, origin=f"rule {rule.pk}", data={"rule": rule.pk})
        except ActionFailed as exc:
            errors.append(f"actions[{index}]: {exc}")
            results.append({"type": action.get("type"), "ok": False, "error": str(exc)})
        else:
            results.append({"type": action["type"], "ok": True, **detail})
    if delayed:
        guarding = is_armed(_alarm_state())
        for pending in delayed:
            pending.while_armed = guarding
        PendingAction.objects.bulk_create(delayed)
        for pending, result in zip(
            delayed, (r for r in results if r.get("scheduled")), strict=True
        ):
            result["pending_action"] = pending.pk
    return results, errors


def _pending(rule: Rule, action: dict[str, Any], fire_at: datetime) -> PendingAction:
    return PendingAction(rule=rule, rule_name=rule.name, action=action, fire_at=fire_at)


def _alarm_state() -> str:
    state = AlarmState.objects.values_list("state", flat=True).first()
    return state or DISARMED


def execute(
    action: dict[str, Any],
    now: datetime,
    *,
    origin: str,
    data: dict[str, Any],
    idempotency_key: str | None = None,
) -> dict[str, Any]:
    """Run one action now. Returns details for its result; ActionFailed when it cannot run."""
    kind = action.get("type")
    if kind == NOTIFY:
        return {"deliveries": notify(action, data, idempotency_key)}
    if kind == SET_ALARM_STATE:
        return _set_alarm_state(action["state"], origin, now)
    if kind == EMIT_EVENT:
        event = AlarmEvent.objects.create(**event_fields(action, now, data))
        return {"event": event.pk}
    raise ActionFailed(f"unknown action type {kind!r}")


def event_fields(action: dict[str, Any], now: datetime, data: dict[str, Any]) -> dict[str, Any]:
    """The AlarmEvent an ``emit_event`` action records (callers may bulk-create them)."""
    return {
        "event_type": AlarmEvent.EventType.RULE_FIRED,
        "message": action["message"],
        "data": {**(action.get("data") or {}), **data},
        "timestamp": now,
    }


def notify(action: dict[str, Any], data: dict[str, Any], key: str | None) -> list[int]:
    """Enqueue the notification to its provider, or to every enabled one; delivery ids."""
    if not apps.is_installed("notifications"):
        raise ActionFailed("the notification outbox is not installed")
    from notifications.models import NotificationProvider
    from notifications.outbox import enqueue

    # Instances, not names: enqueue would look each name up again.
    providers: list[NotificationProvider | str] = (
        [action["provider"]]
        if "provider" in action
        else list(NotificationProvider.objects.filter(enabled=True).order_by("name"))
    )
    if not providers:
        raise ActionFailed("no enabled notification provider")
    deliveries = []
    for provider in providers:
        name = provider if isinstance(provider, str) else provider.name
        try:
            delivery = enqueue(
                provider,
                action["message"],
                title=action.get("title", ""),
                data=data,
                idempotency_key=f"{key}:{name}"[:200] if key else None,
            )
        except ValueError as exc:  # an unknown provider name too
            raise ActionFailed(str(exc)) from None
        deliveries.append(delivery.pk)
    return deliveries


def _set_alarm_state(state: str, origin: str, now: datetime) -> dict[str, Any]:
    from alarm import panel
    from alarm.state_machine import Arm, Disarm, Refused, Transition, Trigger, Trip

    if state == DISARMED:
        command: Any = Disarm()
    elif state in ARMED_MODES:
        command = Arm(state)
    elif state == PENDING:
        command = Trip()
    elif state == TRIGGERED:
        command = Trigger()
    else:
        raise ActionFailed(f"unknown alarm state {state!r}")
    outcome = panel.command(command, source=origin, at=now)
    if isinstance(outcome, Refused):
        raise ActionFailed(f"alarm refused {state}: {outcome.reason}")
    changed = isinstance(outcome, Transition)
    return {"state": outcome.state if isinstance(outcome, Transition) else None, "changed": changed}
