from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from alarm import conditions
from services.integrations import ha_protocol as ha
from services.integrations.ws_support import Malformed, ServerRefused

TOKEN = "secret-token-123"


def msg(**body: Any) -> ha.Incoming:
    return ha.parse_message(body)


def state(entity_id: Any = "binary_sensor.door", value: Any = "on", **extra: Any) -> dict:
    return {
        "entity_id": entity_id,
        "state": value,
        "attributes": {"friendly_name": "Door"},
        "last_changed": "2025-06-01T10:00:00.123+00:00",
        **extra,
    }


def live_session() -> ha.HaSession:
    session = ha.HaSession(TOKEN)
    session.receive(msg(type="auth_required", ha_version="2025.6.1"))
    session.receive(msg(type="auth_ok", ha_version="2025.6.1"))
    session.receive(msg(id=1, type="result", success=True, result=None))
    session.receive(msg(id=2, type="result", success=True, result=[]))
    assert session.phase is ha.Phase.LIVE
    return session


def test_the_entity_id_rule_is_the_alarm_apps():
    assert ha.ENTITY_ID_PATTERN.pattern == conditions.ENTITY_ID_PATTERN.pattern
    assert ha.ENTITY_ID_MAX_LENGTH == conditions.ENTITY_ID_MAX_LENGTH


def test_the_whole_conversation():
    session = ha.HaSession(TOKEN)
    assert session.receive(msg(type="auth_required", ha_version="2025.6.1")) == [
        ha.Send({"type": "auth", "access_token": TOKEN})
    ]
    assert session.phase is ha.Phase.AWAIT_AUTH_RESULT
    assert session.receive(msg(type="auth_ok", ha_version="2025.6.1")) == [
        ha.Authenticated("2025.6.1"),
        ha.Send({"id": 1, "type": "subscribe_events", "event_type": "state_changed"}),
    ]
    assert session.receive(msg(id=1, type="result", success=True, result=None)) == [
        ha.Send({"id": 2, "type": "get_states"})
    ]
    [snapshot] = session.receive(msg(id=2, type="result", success=True, result=[state()]))
    assert isinstance(snapshot, ha.Snapshot)
    assert [s.entity_id for s in snapshot.states] == ["binary_sensor.door"]
    assert session.phase is ha.Phase.LIVE
    event = {
        "event_type": "state_changed",
        "data": {
            "entity_id": "binary_sensor.door",
            "old_state": state(value="on"),
            "new_state": state(value="off"),
        },
    }
    [update] = session.receive(msg(id=1, type="event", event=event))
    assert isinstance(update, ha.StateUpdate)
    assert update.change.new_state is not None and update.change.new_state.state == "off"


def test_command_ids_only_grow_and_pongs_match_their_ping():
    session = live_session()
    pings = [session.ping().payload for _ in range(3)]
    assert [p["id"] for p in pings] == [3, 4, 5]
    assert all(p["type"] == "ping" for p in pings)
    assert session.receive(msg(id=4, type="pong")) == [ha.PongReceived(4)]
    [ignored] = session.receive(msg(id=4, type="pong"))  # answered already
    assert isinstance(ignored, ha.Ignored)
    [ignored] = session.receive(msg(id=99, type="pong"))
    assert isinstance(ignored, ha.Ignored)


def test_auth_invalid_ends_in_auth_failed_with_the_servers_message():
    session = ha.HaSession(TOKEN)
    session.receive(msg(type="auth_required"))
    assert session.receive(msg(type="auth_invalid", message="Invalid access token")) == [
        ha.AuthRejected("Invalid access token")
    ]
    assert session.phase is ha.Phase.AUTH_FAILED
    with pytest.raises(RuntimeError):
        session.ping()


def test_auth_invalid_without_a_message_still_says_why():
    session = ha.HaSession(TOKEN)
    session.receive(msg(type="auth_required"))
    assert session.receive(msg(type="auth_invalid")) == [ha.AuthRejected("auth_invalid")]


def test_no_ping_before_auth_ok():
    session = ha.HaSession(TOKEN)
    session.receive(msg(type="auth_required"))
    with pytest.raises(RuntimeError, match="auth_ok"):
        session.ping()


@pytest.mark.parametrize(
    "messages",
    [
        [{"type": "auth_ok"}],  # before auth_required
        [{"type": "auth_required"}, {"type": "auth_required"}],
        [{"type": "auth_invalid"}],
        [{"type": "event", "id": 1, "event": {}}],  # before authentication
        [{"type": "result", "id": 7, "success": True}],  # for a command never sent
    ],
)
def test_messages_out_of_place_are_ignored_not_fatal(messages):
    session = ha.HaSession(TOKEN)
    *setup, last = messages
    for body in setup:
        session.receive(ha.parse_message(body))
    phase = session.phase
    [output] = session.receive(ha.parse_message(last))
    assert isinstance(output, ha.Ignored)
    assert session.phase is phase


def test_an_unknown_type_is_ignored_with_its_reason():
    [output] = live_session().receive(msg(type="new_fancy_type", id=3))
    assert output == ha.Ignored("unknown_type", "message type 'new_fancy_type'")


@pytest.mark.parametrize("step", ["subscribe", "get_states"])
def test_a_refused_command_ends_the_session(step):
    session = ha.HaSession(TOKEN)
    session.receive(msg(type="auth_required"))
    session.receive(msg(type="auth_ok"))
    error = {"code": "unauthorized", "message": "Unauthorized"}
    if step == "get_states":
        session.receive(msg(id=1, type="result", success=True, result=None))
    with pytest.raises(ServerRefused, match="unauthorized"):
        session.receive(
            msg(id=1 if step == "subscribe" else 2, type="result", success=False, error=error)
        )


def test_events_of_another_subscription_or_type_are_ignored():
    session = live_session()
    [other_id] = session.receive(msg(id=2, type="event", event={"event_type": "state_changed"}))
    [other_type] = session.receive(msg(id=1, type="event", event={"event_type": "call_service"}))
    assert isinstance(other_id, ha.Ignored) and isinstance(other_type, ha.Ignored)


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        ("{not json", "bad_json"),
        ("", "bad_json"),
        ("42", "not_object"),
        ('"auth_ok"', "not_object"),
        ("[1]", "not_object"),
        ("null", "not_object"),
        ('{"id": 1}', "bad_message"),
        ('{"type": 5}', "bad_message"),
        ('{"type": null}', "bad_message"),
        ('{"type": "pong", "id": "3"}', "bad_message"),
        ('{"type": "pong", "id": -1}', "bad_message"),
        ('{"type": "pong", "id": true}', "bad_message"),
        ('{"type": "pong", "id": 1.5}', "bad_message"),
        (b"\xff\xfe", "bad_json"),
    ],
)
def test_malformed_frames_name_their_reason(frame, reason):
    with pytest.raises(Malformed) as caught:
        ha.decode_frame(frame)
    assert caught.value.reason == reason


def test_a_coalesced_array_is_several_messages():
    frame = json.dumps([{"type": "pong", "id": 3}, {"type": "pong", "id": 4}])
    assert [m.id for m in ha.decode_frame(frame)] == [3, 4]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"id": 1, "type": "result"}, "bad_message"),  # no success
        ({"id": 1, "type": "result", "success": "yes"}, "bad_message"),
    ],
)
def test_a_result_needs_a_boolean_success(body, reason):
    session = live_session()
    with pytest.raises(Malformed) as caught:
        session.receive(ha.parse_message(body))
    assert caught.value.reason == reason


@pytest.mark.parametrize(
    ("obj", "reason"),
    [
        ("binary_sensor.door", "bad_state"),
        ({"state": "on"}, "bad_entity_id"),
        (state(entity_id="Binary_Sensor.Door"), "bad_entity_id"),
        (state(entity_id="no_dot"), "bad_entity_id"),
        (state(entity_id="a.b.c"), "bad_entity_id"),
        (state(entity_id="sensor." + "x" * 250), "bad_entity_id"),
        (state(entity_id=7), "bad_entity_id"),
        (state(value=None), "bad_state"),
        (state(value=1), "bad_state"),
        (state(value="x" * 256), "bad_state"),
        (state(attributes=[1, 2]), "bad_state"),
    ],
)
def test_bad_states_are_rejected_with_a_reason(obj, reason):
    with pytest.raises(Malformed) as caught:
        ha.parse_state(obj)
    assert caught.value.reason == reason


@pytest.mark.parametrize(
    ("extra", "name", "last_changed"),
    [
        ({}, "Door", datetime(2025, 6, 1, 10, 0, 0, 123000, tzinfo=UTC)),
        ({"attributes": {}}, None, datetime(2025, 6, 1, 10, 0, 0, 123000, tzinfo=UTC)),
        (
            {"attributes": {"friendly_name": 5}},
            None,
            datetime(2025, 6, 1, 10, 0, 0, 123000, tzinfo=UTC),
        ),
        ({"last_changed": "2025-06-01T10:00:00"}, "Door", None),  # naive: not trusted
        ({"last_changed": "yesterday"}, "Door", None),
        ({"last_changed": 1717236000}, "Door", None),
    ],
)
def test_state_fields(extra, name, last_changed):
    parsed = ha.parse_state(state(**extra))
    assert (parsed.name, parsed.last_changed) == (name, last_changed)


def test_a_missing_attributes_object_is_empty_and_state_may_be_empty():
    parsed = ha.parse_state({"entity_id": "sensor.x", "state": ""})
    assert (parsed.state, parsed.attributes) == ("", {})


def test_one_bad_state_spoils_nothing_else():
    states, rejected = ha.parse_states([state(), {"entity_id": "bad"}, state("lock.front")])
    assert [s.entity_id for s in states] == ["binary_sensor.door", "lock.front"]
    assert [r.reason for r in rejected] == ["bad_entity_id"]
    with pytest.raises(Malformed):
        ha.parse_states({"not": "a list"})


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (None, "bad_event"),
        ({"data": None}, "bad_event"),
        ({"data": {"new_state": state()}}, "bad_entity_id"),
        ({"data": {"entity_id": "binary_sensor.door", "new_state": "on"}}, "bad_state"),
        ({"data": {"entity_id": "binary_sensor.door", "new_state": state("lock.x")}}, "bad_event"),
    ],
)
def test_bad_state_changed_events(data, reason):
    with pytest.raises(Malformed) as caught:
        ha.parse_state_changed(data)
    assert caught.value.reason == reason


def test_a_removed_entity_has_no_new_state():
    change = ha.parse_state_changed(
        {"data": {"entity_id": "binary_sensor.door", "old_state": state(), "new_state": None}}
    )
    assert change == ha.StateChanged("binary_sensor.door", None)


@pytest.mark.parametrize(
    ("include", "exclude", "entity_id", "taken"),
    [
        ((), (), "sensor.power", True),
        (("binary_sensor.*", "lock.*"), (), "lock.front", True),
        (("binary_sensor.*", "lock.*"), (), "sensor.power", False),
        ((), ("sensor.*_power",), "sensor.kitchen_power", False),
        ((), ("sensor.*_power",), "sensor.kitchen_temperature", True),
        (("binary_sensor.*",), ("binary_sensor.*_battery",), "binary_sensor.door_battery", False),
    ],
)
def test_entity_filter(include, exclude, entity_id, taken):
    assert ha.EntityFilter(include, exclude)(entity_id) is taken


def test_the_token_is_not_in_the_sessions_repr():
    assert TOKEN not in repr(ha.HaSession(TOKEN))
