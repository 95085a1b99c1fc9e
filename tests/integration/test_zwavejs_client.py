"""ZwaveJsClient against the fake zwave-js-server (real sockets, a fake clock); what it shares
with the Home Assistant client is in test_ws_clients.py. ``zw``, ``harnesses`` and ``clock``
are conftest's fixtures."""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable
from typing import Any

from tests.fakes.zwavejs_server import FakeZwaveJs
from tests.integration.ws_harness import ZW_DOOR as DOOR
from tests.integration.ws_harness import H, T


async def test_version_then_schema_then_start_listening_then_connected(zw, harnesses):
    harness = await harnesses.connected(zw)
    assert [m["command"] for m in zw.received] == ["set_api_schema", "start_listening"]
    assert zw.received[0]["schemaVersion"] == 35
    assert harness.report.events() == ["connecting", "connected"]
    assert harness.report.last.details == {
        "driver_version": zw.driver_version,
        "server_version": zw.server_version,
        "home_id": zw.home_id,
        "schema_version": 35,
        "nodes": 2,
        "url": zw.url,
    }
    calls = {c.entity_id: c for c in harness.states.calls}
    assert set(calls) == {DOOR, "zwavejs.node_7_battery_level", "zwavejs.node_12_binary_sensor_any"}
    door = calls[DOOR]
    assert (door.state, door.source, door.name) == ("23", "zwavejs", "Front door Door state")
    assert door.attributes is not None
    assert door.attributes["value_label"] == "Window/door is closed"
    assert calls["zwavejs.node_12_binary_sensor_any"].state == "off"
    assert calls["zwavejs.node_12_binary_sensor_any"].name == "Node 12 Sensor state (Any)"


async def test_value_updates_reach_on_state(zw, harnesses):
    harness = await harnesses.connected(zw)
    assert await zw.update_value(7, 113, "Access Control", 22, property_key="Door state") == 1
    await harness.states.wait_for(lambda: harness.states.state_of(DOOR) == "22")
    door = harness.states.calls_for(DOOR)[-1]
    assert door.attributes is not None and door.attributes["value_label"] == "Window/door is open"
    await zw.update_value(7, 112, 3, 0)  # not a chosen command class
    await zw.update_value(12, 48, "Any", True)
    await harness.states.wait_for(
        lambda: harness.states.state_of("zwavejs.node_12_binary_sensor_any") == "on"
    )
    assert harness.health()["value_events"] == 2


async def test_nodes_added_and_removed_update_the_status_details(zw, harnesses):
    harness = await harnesses.connected(zw)
    await zw.push_event(
        {"source": "controller", "event": "node added", "node": {"nodeId": 20}, "result": {}}
    )
    changed = await harness.report.wait_for_event("connected", 2)
    assert changed.details is not None and changed.details["nodes"] == 3
    await zw.push_event(
        {"source": "controller", "event": "node removed", "node": {"nodeId": 12}, "reason": 0}
    )
    changed = await harness.report.wait_for_event("connected", 3)
    assert changed.details is not None and changed.details["nodes"] == 2


async def test_the_schema_is_brought_into_an_older_servers_range(harnesses):
    async with FakeZwaveJs(max_schema=20) as old:
        harness = await harnesses.connected(old)
        assert old.received[0]["schemaVersion"] == 20
        assert harness.report.last.details is not None
        assert harness.report.last.details["schema_version"] == 20


async def test_a_silent_server_is_noticed_by_websocket_pings(zw, harnesses, clock):
    harness = await harnesses.connected(zw)
    for pings in (1, 2):  # a quiet network: one PING frame per interval, answered
        await harness.waits_until(H)
        clock.advance(H)
        await zw.wait_for(lambda n=pings: zw.pings >= n)
    await harness.waits_until(H)
    zw.silent = True
    clock.advance(H)
    await harness.waits_until(T)
    clock.advance(T + 0.01)
    lost = await harness.report.wait_for_event("disconnected")
    assert lost.error == "HeartbeatTimeout: no pong within 10 s"
    zw.silent = False
    await harness.waits_until(0.5)
    clock.advance(0.5)
    await harness.report.wait_for_event("connected", 2)


async def test_a_refused_start_listening_is_a_disconnect_with_the_reason(zw, harnesses, clock):
    zw.fail_start_listening = True
    harness = harnesses.start(zw)
    lost = await harness.report.wait_for_event("disconnected")
    assert lost.error == "ServerRefused: start_listening refused: unknown_error"
    zw.fail_start_listening = False
    await harness.waits_until(0.5)
    clock.advance(0.5)
    await harness.report.wait_for_event("connected")


def node_event(event: str, node_id: Any = 7, **fields: Any) -> str:
    """A node's event frame, as zwave-js-server sends it."""
    body = {"source": "node", "event": event, "nodeId": node_id, **fields}
    return json.dumps({"type": "event", "event": body})


def fuzz_frames(rng: random.Random, count: int) -> list[tuple[str | bytes, str | None]]:
    """(frame, malformed reason or None when the frame is well-formed and of no use)."""
    args = {
        "commandClass": 113,
        "endpoint": 0,
        "property": "Access Control",
        "propertyKey": "Door state",
        "newValue": 22,
    }
    makers: list[Callable[[], tuple[str | bytes, str | None]]] = [
        lambda: ("[" + "".join(rng.choices('{}[]":,ab1', k=rng.randint(0, 30))) + ",", "bad_json"),
        lambda: (json.dumps(rng.choice([[], 1, "x", None])), "not_object"),
        lambda: (json.dumps({"type": rng.choice([1, None, []])}), "bad_message"),
        lambda: (json.dumps({"type": f"brand_new_{rng.randint(0, 9)}"}), "unknown_type"),
        lambda: (json.dumps({"type": "result", "messageId": "x9", "success": True}), "unexpected"),
        lambda: (
            json.dumps({"type": "version", "driverVersion": "1", "serverVersion": "1"}),
            "unexpected",
        ),
        lambda: (
            json.dumps({"type": "event", "event": rng.choice([None, 1, {"source": 3}])}),
            "bad_event",
        ),
        lambda: (
            node_event("value updated", rng.choice(["7", None, 7.5]), args=args),
            "bad_event",
        ),
        lambda: (
            node_event(
                "value updated",
                args={**args, rng.choice(["commandClass", "property", "endpoint"]): [1]},
            ),
            "bad_value",
        ),
        lambda: (node_event(rng.choice(["wake up", "sleep", "statistics updated"])), None),
        lambda: (bytes(rng.randbytes(rng.randint(1, 32))), "binary"),
    ]
    return [rng.choice(makers)() for _ in range(count)]


async def test_thousands_of_malformed_frames_are_counted_and_harmless(zw, harnesses, caplog):
    harness = await harnesses.connected(zw)
    frames = fuzz_frames(random.Random(11), 2000)
    with caplog.at_level(logging.WARNING):
        for frame, _ in frames:
            await zw.send_raw(frame)
        await zw.update_value(7, 113, "Access Control", 22, property_key="Door state")
        await harness.states.wait_for(lambda: harness.states.state_of(DOOR) == "22", 10)
    expected: dict[str, int] = {}
    for _, reason in frames:
        if reason is not None:
            expected[reason] = expected.get(reason, 0) + 1
    assert harness.health()["malformed"] == expected
    assert harness.health()["connects"] == 1
    logged = [r for r in caplog.records if getattr(r, "event", "") == "zwavejs.malformed"]
    assert len(logged) == 1
