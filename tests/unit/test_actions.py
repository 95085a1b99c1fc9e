from __future__ import annotations

from typing import Any

import pytest

from alarm.actions import action_errors, delay_of, provider_names

NOTIFY: dict[str, Any] = {"type": "notify", "message": "Door open"}


@pytest.mark.parametrize(
    "actions",
    [
        [],
        [NOTIFY],
        [{**NOTIFY, "title": "Alarm", "provider": "phone", "delay_seconds": 1}],
        [{"type": "set_alarm_state", "state": "armed_away", "delay_seconds": 600}],
        [{"type": "set_alarm_state", "state": s} for s in ("disarmed", "pending", "triggered")],
        [{"type": "emit_event", "message": "x", "data": {"zone": 1}}],
    ],
)
def test_valid_actions(actions: list[dict[str, Any]]) -> None:
    assert action_errors(actions) == []


@pytest.mark.parametrize(
    ("actions", "messages"),
    [
        ({"type": "notify"}, ["actions: expected a list of actions, got dict"]),
        (["notify"], ["actions[0]: expected an action object, got str"]),
        ([{"type": "sms", "message": "x"}],
         ["actions[0].type: unknown action type 'sms'; known: notify, set_alarm_state, "
          "emit_event"]),
        ([{"message": "x"}], ["actions[0].type: unknown action type None"]),
        ([NOTIFY, {"type": "notify"}], ["actions[1]: missing keys ['message']"]),
        ([{**NOTIFY, "delay_seconds": 0}],
         ["actions[0].delay_seconds: expected a whole number of seconds from 1 to 600, got 0"]),
        ([{**NOTIFY, "delay_seconds": 601}], ["actions[0].delay_seconds: expected a whole"]),
        ([{**NOTIFY, "delay_seconds": 1.5}], ["actions[0].delay_seconds: expected a whole"]),
        ([{**NOTIFY, "delay_seconds": True}], ["actions[0].delay_seconds: expected a whole"]),
        ([{**NOTIFY, "delay_seconds": "5"}], ["actions[0].delay_seconds: expected a whole"]),
        ([{**NOTIFY, "colour": "red"}], ["actions[0]: unknown keys ['colour'] for a notify"]),
        ([{"type": "notify", "message": "  "}], ["actions[0].message: expected non-empty text"]),
        ([{**NOTIFY, "provider": ""}], ["actions[0].provider: expected a provider name"]),
        ([{**NOTIFY, "title": "x" * 301}], ["actions[0].title: expected text of at most 300"]),
        ([{"type": "set_alarm_state", "state": "arming"}],
         ["actions[0].state: unknown alarm state 'arming'"]),
        ([{"type": "emit_event", "message": "x", "data": [1]}],
         ["actions[0].data: expected an object, got list"]),
        ([{"type": "emit_event", "message": "x", "data": {"x": {1, 2}}}],
         ["actions[0].data: must be JSON"]),
        ([NOTIFY] * 21, ["actions: at most 20 actions, got 21"]),
        # every problem of every action, in order
        ([{"type": "bogus"}, {**NOTIFY, "delay_seconds": -1}],
         ["actions[0].type: unknown action type", "actions[1].delay_seconds: expected"]),
    ],
)  # fmt: skip
def test_invalid_actions_name_their_path(actions: object, messages: list[str]) -> None:
    errors = action_errors(actions)
    assert len(errors) == len(messages)
    for error, message in zip(errors, messages, strict=True):
        assert str(error).startswith(message)


def test_delay_of_and_provider_names() -> None:
    actions: list[dict[str, Any]] = [NOTIFY, {**NOTIFY, "provider": "phone", "delay_seconds": 30}]
    assert [delay_of(a) for a in actions] == [0, 30]
    assert provider_names(actions) == {"phone"}
