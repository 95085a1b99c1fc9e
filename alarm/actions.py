"""Rule actions: their shape and validation. Pure: no Django.

A rule's ``actions`` is a list of dicts, run in order when the rule fires:

- ``{"type": "notify", "message": "Front door open", "title": "Alarm", "provider": "phone"}``
  enqueues a notification in the outbox; without ``provider`` to every enabled provider;
- ``{"type": "set_alarm_state", "state": "armed_away"}``: ``disarmed``, an armed mode (through
  the exit delay), ``pending`` (a sensor trip: the entry delay when armed) or ``triggered``;
- ``{"type": "emit_event", "message": "Garage left open", "data": {...}}`` records an alarm
  event (``rule_fired``).

Any action may carry ``"delay_seconds": N`` (a whole number from 1 to 600): it then becomes a
pending action that fires N seconds after the rule did, unless cancelled before (by a disarm
if it was scheduled while armed, by disabling or deleting the rule, or by hand in the admin).
Errors name their path (``actions[1].delay_seconds: ...``) like condition errors do.
"""

from __future__ import annotations

import json
from typing import Any

from alarm.state_machine import ARMED_MODES, DISARMED, PENDING, TRIGGERED

ROOT_PATH = "actions"
NOTIFY = "notify"
SET_ALARM_STATE = "set_alarm_state"
EMIT_EVENT = "emit_event"
ACTION_TYPES = (NOTIFY, SET_ALARM_STATE, EMIT_EVENT)
DELAY_KEY = "delay_seconds"
MIN_DELAY, MAX_DELAY = 1, 600
MAX_ACTIONS = 20
MESSAGE_MAX_LENGTH = 2000
TITLE_MAX_LENGTH = 300
TARGET_STATES = (DISARMED, *ARMED_MODES, PENDING, TRIGGERED)

# Keys each type accepts besides "type" and "delay_seconds"; the required ones first.
_REQUIRED = {NOTIFY: ("message",), SET_ALARM_STATE: ("state",), EMIT_EVENT: ("message",)}
_OPTIONAL = {NOTIFY: ("title", "provider"), SET_ALARM_STATE: (), EMIT_EVENT: ("data",)}


class ActionError(ValueError):
    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


def delay_of(action: dict[str, Any]) -> int:
    """The action's delay in seconds; 0 when it runs at once."""
    return int(action.get(DELAY_KEY) or 0)


def action_errors(actions: object) -> list[ActionError]:
    """Every problem of ``actions``, in order; empty when it is valid."""
    if not isinstance(actions, list):
        return [ActionError(ROOT_PATH, f"expected a list of actions, got {_kind(actions)}")]
    if len(actions) > MAX_ACTIONS:
        return [ActionError(ROOT_PATH, f"at most {MAX_ACTIONS} actions, got {len(actions)}")]
    errors: list[ActionError] = []
    for index, action in enumerate(actions):
        errors += _action_errors(action, f"{ROOT_PATH}[{index}]")
    return errors


def provider_names(actions: list[dict[str, Any]]) -> set[str]:
    """The provider names that notify actions name explicitly (valid actions only)."""
    return {a["provider"] for a in actions if a.get("type") == NOTIFY and "provider" in a}


def _action_errors(action: object, path: str) -> list[ActionError]:
    if not isinstance(action, dict):
        return [ActionError(path, f"expected an action object, got {_kind(action)}")]
    kind = action.get("type")
    if kind not in ACTION_TYPES:
        known = ", ".join(ACTION_TYPES)
        return [ActionError(f"{path}.type", f"unknown action type {kind!r}; known: {known}")]
    allowed = {"type", DELAY_KEY, *_REQUIRED[kind], *_OPTIONAL[kind]}
    errors = []
    if unknown := sorted(set(action) - allowed):
        errors.append(ActionError(path, f"unknown keys {unknown} for a {kind} action"))
    if missing := [k for k in _REQUIRED[kind] if k not in action]:
        errors.append(ActionError(path, f"missing keys {missing}"))
    if DELAY_KEY in action and (problem := _delay_problem(action[DELAY_KEY])):
        errors.append(ActionError(f"{path}.{DELAY_KEY}", problem))
    for key in (*_REQUIRED[kind], *_OPTIONAL[kind]):
        if key in action and (problem := _value_problem(kind, key, action[key])):
            errors.append(ActionError(f"{path}.{key}", problem))
    return errors


def _delay_problem(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int) or not MIN_DELAY <= value <= MAX_DELAY:
        return (
            f"expected a whole number of seconds from {MIN_DELAY} to {MAX_DELAY}, got {value!r}"
            " (leave it out to run the action at once)"
        )
    return None


def _value_problem(kind: str, key: str, value: object) -> str | None:
    if key == "message":
        if not isinstance(value, str) or not value.strip():
            return "expected non-empty text"
        if len(value) > MESSAGE_MAX_LENGTH:
            return f"at most {MESSAGE_MAX_LENGTH} characters"
    elif key == "title":
        if not isinstance(value, str) or len(value) > TITLE_MAX_LENGTH:
            return f"expected text of at most {TITLE_MAX_LENGTH} characters"
    elif key == "provider":
        if not isinstance(value, str) or not value.strip():
            return "expected a provider name (leave it out to notify every enabled provider)"
    elif key == "state":
        if value not in TARGET_STATES:
            return f"unknown alarm state {value!r}; known: {', '.join(TARGET_STATES)}"
    elif key == "data":
        return _data_problem(value)
    return None


def _data_problem(value: object) -> str | None:
    if not isinstance(value, dict):
        return f"expected an object, got {_kind(value)}"
    try:
        json.dumps(value)
    except (TypeError, ValueError) as exc:
        return f"must be JSON: {exc}"
    return None


def _kind(value: object) -> str:
    return type(value).__name__
