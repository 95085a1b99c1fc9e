from __future__ import annotations

from typing import Any

import pytest

from services.integrations import zwavejs_protocol as zw
from services.integrations.ha_protocol import entity_id_problem
from services.integrations.ws_support import Malformed, ServerRefused

VERSION = {
    "type": "version",
    "driverVersion": "14.3.2",
    "serverVersion": "1.40.1",
    "homeId": 3967322157,
    "minSchemaVersion": 0,
    "maxSchemaVersion": 40,
}


def value(cc: int = 113, prop: Any = "Access Control", raw: Any = 23, **extra: Any) -> dict:
    return {
        "commandClass": cc,
        "commandClassName": "Notification",
        "endpoint": 0,
        "property": prop,
        "value": raw,
        **extra,
    }


DOOR = value(
    propertyKey="Door state",
    propertyKeyName="Door state",
    metadata={
        "label": "Door state",
        "states": {"22": "Window/door is open", "23": "Window/door is closed"},
    },
)
BATTERY = value(
    128, "level", 90, commandClassName="Battery", metadata={"label": "Battery level", "unit": "%"}
)
CONFIG = value(112, 3, 1, commandClassName="Configuration")


def event(source: str, name: str, **fields: Any) -> dict[str, Any]:
    """An event message, as zwave-js-server sends it."""
    return {"type": "event", "event": {"source": source, "event": name, **fields}}


def value_updated(args: Any, node_id: Any = 7) -> dict[str, Any]:
    return event("node", "value updated", nodeId=node_id, args=args)


def listening(nodes: list[dict] | None = None, **kwargs: Any) -> tuple[zw.ZwaveSession, list]:
    session = zw.ZwaveSession(**kwargs)
    session.receive(VERSION)
    session.receive({"type": "result", "messageId": "1", "success": True, "result": {}})
    if nodes is None:
        nodes = [{"nodeId": 7, "name": "Front door", "values": [DOOR, BATTERY, CONFIG]}]
    state = {"controller": {"homeId": 3967322157}, "nodes": nodes}
    outputs = session.receive(
        {"type": "result", "messageId": "2", "success": True, "result": {"state": state}}
    )
    return session, outputs


@pytest.mark.parametrize(
    ("node", "val", "entity_id"),
    [
        (7, DOOR, "zwavejs.node_7_notification_access_control_door_state"),
        (7, BATTERY, "zwavejs.node_7_battery_level"),
        (12, value(48, "Any", True), "zwavejs.node_12_binary_sensor_any"),
        (12, value(37, "currentValue", False), "zwavejs.node_12_binary_switch_current_value"),
        (
            3,
            value(37, "currentValue", True, endpoint=2),
            "zwavejs.node_3_ep2_binary_switch_current_value",
        ),
        (3, value(49, "Air temperature", 21.5), "zwavejs.node_3_multilevel_sensor_air_temperature"),
        (3, value(50, "value", 1, propertyKey=65537), "zwavejs.node_3_meter_value_65537"),
        (3, value(112, 3, 1), "zwavejs.node_3_cc112_3"),
        (3, value(999, "Ünïcode / weird!!", 1), "zwavejs.node_3_cc999_n_code_weird"),
        (3, value(999, "", 1), "zwavejs.node_3_cc999_x"),
    ],
)
def test_value_entity_ids(node, val, entity_id):
    assert zw.value_entity_id(node, val) == entity_id
    assert entity_id_problem(entity_id) is None


def test_a_very_long_id_is_cut_with_a_hash_and_stays_valid():
    long_one = zw.value_entity_id(1, value(49, "x" * 300, 1))
    other = zw.value_entity_id(1, value(49, "x" * 299 + "y", 1))
    assert len(long_one) == 255 and long_one != other
    assert entity_id_problem(long_one) is None


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        (True, "on"),
        (False, "off"),
        (None, "unknown"),
        (23, "23"),
        (21.5, "21.5"),
        ("open", "open"),
        ({"b": 1, "a": 2}, '{"a": 2, "b": 1}'),
        ("x" * 300, "x" * 255),
    ],
)
def test_value_states(raw, text):
    assert zw.value_state(raw) == text


@pytest.mark.parametrize(
    ("low", "high", "wanted", "schema"),
    [(0, 40, 35, 35), (0, 20, 35, 20), (36, 44, 35, 36), (0, 0, 35, 0)],
)
def test_the_schema_is_ours_brought_into_the_servers_range(low, high, wanted, schema):
    version = zw.ServerVersion("d", "s", None, low, high)
    assert zw.choose_schema(version, wanted) == schema


@pytest.mark.parametrize(
    "body",
    [
        {**VERSION, "driverVersion": None},
        {**VERSION, "serverVersion": 3},
        {**VERSION, "minSchemaVersion": "0"},
        {**VERSION, "minSchemaVersion": 5, "maxSchemaVersion": 1},
        {**VERSION, "maxSchemaVersion": True},
    ],
)
def test_bad_version_messages(body):
    with pytest.raises(Malformed) as caught:
        zw.ZwaveSession().receive(body)
    assert caught.value.reason == "bad_version"


def test_the_conversation_version_schema_start_listening():
    session = zw.ZwaveSession()
    version_received, send = session.receive(VERSION)
    assert version_received == zw.VersionReceived(
        zw.ServerVersion("14.3.2", "1.40.1", 3967322157, 0, 40), 35
    )
    assert send == zw.Send({"messageId": "1", "command": "set_api_schema", "schemaVersion": 35})
    assert session.receive({"type": "result", "messageId": "1", "success": True}) == [
        zw.Send({"messageId": "2", "command": "start_listening"})
    ]


def test_listening_maps_the_chosen_command_classes():
    session, [out] = listening()
    assert isinstance(out, zw.Listening)
    assert out.details == {
        "driver_version": "14.3.2",
        "server_version": "1.40.1",
        "home_id": 3967322157,
        "schema_version": 35,
        "nodes": 1,
    }
    door, battery = out.entities  # the configuration value is not an alarm's business
    assert (door.entity_id, door.state, door.name) == (
        "zwavejs.node_7_notification_access_control_door_state",
        "23",
        "Front door Door state",
    )
    assert door.attributes == {
        "node_id": 7,
        "endpoint": 0,
        "command_class": 113,
        "property": "Access Control",
        "property_key": "Door state",
        "label": "Door state",
        "value_label": "Window/door is closed",
    }
    assert battery.attributes["unit"] == "%" and battery.state == "90"
    assert session.phase is zw.Phase.LIVE


def test_every_command_class_when_none_and_no_entity_when_empty():
    _, [every] = listening(command_classes=None)
    _, [none] = listening(command_classes=frozenset())
    assert isinstance(every, zw.Listening) and isinstance(none, zw.Listening)
    assert len(every.entities) == 3 and none.entities == []


def test_a_value_event_agrees_with_the_dump():
    session, [out] = listening()
    assert isinstance(out, zw.Listening)
    args = {k: v for k, v in DOOR.items() if k not in ("value", "metadata")}
    [update] = session.receive(value_updated({**args, "newValue": 22, "prevValue": 23}))
    assert isinstance(update, zw.ValueUpdate)
    dumped = out.entities[0]
    assert update.entity.entity_id == dumped.entity_id and update.entity.name == dumped.name
    assert update.entity.state == "22"
    assert update.entity.attributes == {**dumped.attributes, "value_label": "Window/door is open"}


def test_events_that_are_not_ours_are_dropped_silently():
    session, _ = listening()
    for message in [
        value_updated(CONFIG),
        event("node", "statistics updated", nodeId=7, statistics={}),
        event("driver", "logging", message="x"),
        event("controller", "inclusion started", secure=True),
    ]:
        assert session.receive(message) == []


def test_nodes_added_removed_and_ready():
    session, _ = listening()
    [added] = session.receive(event("controller", "node added", node={"nodeId": 9}))
    assert isinstance(added, zw.NodesChanged) and added.details["nodes"] == 2
    hall = {"nodeId": 9, "name": "Hall", "values": [value(48, "Any", False)]}
    ready = session.receive(event("node", "ready", nodeId=9, nodeState=hall))
    assert [u.entity.entity_id for u in ready if isinstance(u, zw.ValueUpdate)] == [
        "zwavejs.node_9_binary_sensor_any"
    ]
    [removed] = session.receive(event("controller", "node removed", node={"nodeId": 7}))
    assert isinstance(removed, zw.NodesChanged) and removed.details["nodes"] == 1


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ([], "not_object"),
        ({"type": 3}, "bad_message"),
        ({"type": "event", "event": None}, "bad_event"),
        ({"type": "event", "event": {"source": "node"}}, "bad_event"),
        (value_updated(DOOR, node_id="7"), "bad_event"),
        (value_updated(None), "bad_value"),
        (value_updated({**DOOR, "commandClass": "113"}), "bad_value"),
        (value_updated({**DOOR, "property": None}), "bad_value"),
        (value_updated({**DOOR, "endpoint": "0"}), "bad_value"),
        (event("controller", "node added", node=9), "bad_event"),
    ],
)
def test_malformed_messages_name_their_reason(body, reason):
    session, _ = listening()
    with pytest.raises(Malformed) as caught:
        session.receive(body)
    assert caught.value.reason == reason


def test_unknown_types_stray_results_and_early_events_are_ignored():
    session, _ = listening()
    [unknown] = session.receive({"type": "brand_new"})
    [stray] = session.receive({"type": "result", "messageId": "77", "success": True})
    [early] = zw.ZwaveSession().receive({"type": "event", "event": {}})
    assert {unknown.reason, stray.reason, early.reason} == {"unknown_type", "unexpected"}


def test_bad_nodes_and_values_in_the_dump_spoil_nothing_else():
    nodes = [{"nodeId": "x"}, {"nodeId": 7, "values": [DOOR, {"commandClass": 113}, 5]}]
    _, [out] = listening(nodes)
    assert isinstance(out, zw.Listening)
    assert [e.entity_id for e in out.entities] == [
        "zwavejs.node_7_notification_access_control_door_state"
    ]
    assert sorted(r.reason for r in out.rejected) == ["bad_node", "bad_value", "bad_value"]
    assert out.details["nodes"] == 1


@pytest.mark.parametrize(
    "result",
    [
        {"type": "result", "messageId": "1", "success": False, "errorCode": "schema_incompatible"},
        {
            "type": "result",
            "messageId": "1",
            "success": False,
            "errorCode": "zwave_error",
            "zwaveErrorMessage": "Driver not ready",
        },
    ],
)
def test_a_refused_command_ends_the_session(result):
    session = zw.ZwaveSession()
    session.receive(VERSION)
    with pytest.raises(ServerRefused, match="set_api_schema refused"):
        session.receive(result)


def test_a_start_listening_result_without_nodes_is_malformed():
    session = zw.ZwaveSession()
    session.receive(VERSION)
    session.receive({"type": "result", "messageId": "1", "success": True})
    with pytest.raises(Malformed) as caught:
        session.receive({"type": "result", "messageId": "2", "success": True, "result": {}})
    assert caught.value.reason == "bad_state"
