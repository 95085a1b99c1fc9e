"""ZwaveJsClient against the fake zwave-js-server (real sockets, a fake clock)."""

from __future__ import annotations

import dataclasses
import json
import logging
import random
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from services.integrations.zwavejs import ZwaveJsClient, ZwaveJsSettings
from tests.fakes.ws_recorders import WatchedClock
from tests.fakes.zwavejs_server import FakeZwaveJs, running_fake_zwavejs
from tests.integration.ws_harness import Harness, MakeHarness, harness_factory

DOOR = "zwavejs.node_7_notification_access_control_door_state"
H, T = 30.0, 10.0


@pytest.fixture
async def zw() -> AsyncIterator[FakeZwaveJs]:
    async with running_fake_zwavejs() as fake:
        fake.add_node(7, "Front door")
        fake.add_value(
            7,
            113,
            "Access Control",
            23,
            property_key="Door state",
            metadata={
                "label": "Door state",
                "states": {"22": "Window/door is open", "23": "Window/door is closed"},
            },
        )
        fake.add_value(7, 128, "level", 90, metadata={"label": "Battery level", "unit": "%"})
        fake.add_value(7, 112, 3, 1)  # a configuration parameter: not an entity
        fake.add_node(12)
        fake.add_value(12, 48, "Any", False, metadata={"label": "Sensor state (Any)"})
        yield fake


@pytest.fixture
def clock() -> WatchedClock:
    return WatchedClock(datetime(2025, 6, 2, 12, 0, tzinfo=UTC))


@pytest.fixture
async def make_harness(clock: WatchedClock) -> AsyncIterator[MakeHarness]:
    async with harness_factory(clock) as make:
        yield make


def settings_for(zw: FakeZwaveJs, **overrides: Any) -> ZwaveJsSettings:
    base = ZwaveJsSettings(zw.url, heartbeat_interval=H, pong_timeout=T, close_timeout=0.2)
    return dataclasses.replace(base, **overrides)


async def connected(make: MakeHarness, zw: FakeZwaveJs, **overrides: Any) -> Harness:
    harness = make(ZwaveJsClient, settings_for(zw, **overrides)).start()
    await harness.report.wait_for_event("connected")
    return harness


async def test_version_then_schema_then_start_listening_then_connected(zw, make_harness):
    harness = await connected(make_harness, zw)
    assert [m["command"] for m in zw.received] == ["set_api_schema", "start_listening"]
    assert zw.received[0]["schemaVersion"] == 35
    assert harness.report.events == ["connecting", "connected"]
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


async def test_value_updates_reach_on_state(zw, make_harness):
    harness = await connected(make_harness, zw)
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


async def test_nodes_added_and_removed_update_the_status_details(zw, make_harness):
    harness = await connected(make_harness, zw)
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


async def test_the_schema_is_brought_into_an_older_servers_range(make_harness):
    async with running_fake_zwavejs(max_schema=20) as old:
        harness = await connected(make_harness, old)
        assert old.received[0]["schemaVersion"] == 20
        assert harness.report.last.details is not None
        assert harness.report.last.details["schema_version"] == 20


async def test_server_gone_disconnected_then_back_with_what_changed(zw, make_harness, clock):
    harness = await connected(make_harness, zw)
    before = len(harness.states.calls)
    await zw.stop()
    lost = await harness.report.wait_for_event("disconnected")
    assert "closed by the server" in (lost.error or "")
    await harness.waits_until(0.5)
    clock.advance(0.5)
    await harness.waits_until(1.0)  # refused: nobody listens
    assert "Cannot connect" in (harness.health()["last_error"] or "")
    for entry in zw.nodes[7]["values"]:
        if entry["commandClass"] == 113:
            entry["value"] = 22  # the door opened while we were away
    await zw.start()
    clock.advance(1.0)
    await harness.report.wait_for_event("connected", 2)
    assert [(c.entity_id, c.state) for c in harness.states.calls[before:]] == [(DOOR, "22")]


async def test_a_silent_server_is_noticed_by_websocket_pings(zw, make_harness, clock):
    harness = await connected(make_harness, zw)
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


async def test_a_refused_start_listening_is_a_disconnect_with_the_reason(zw, make_harness, clock):
    zw.fail_start_listening = True
    harness = make_harness(ZwaveJsClient, settings_for(zw)).start()
    lost = await harness.report.wait_for_event("disconnected")
    assert lost.error == "ServerRefused: start_listening refused: unknown_error"
    zw.fail_start_listening = False
    await harness.waits_until(0.5)
    clock.advance(0.5)
    await harness.report.wait_for_event("connected")


async def test_the_handshake_is_bounded_by_connect_timeout(zw, make_harness, clock):
    zw.silent = True  # upgrades, never sends version
    harness = make_harness(ZwaveJsClient, settings_for(zw)).start()
    await zw.wait_for(lambda: len(zw.clients) == 1)
    await clock.wait_for_deadlines([10.0])
    clock.advance(10.0)
    lost = await harness.report.wait_for_event("disconnected")
    assert lost.error == "ConnectionLost: no handshake within 10 s"


@pytest.mark.parametrize("phase", ["handshake", "backoff", "connected"])
async def test_stopping_returns_promptly(zw, make_harness, phase):
    zw.silent = phase == "handshake"
    zw.refuse = phase == "backoff"
    harness = make_harness(ZwaveJsClient, settings_for(zw)).start()
    if phase == "handshake":
        await zw.wait_for(lambda: len(zw.clients) == 1)
    elif phase == "backoff":
        await harness.waits_until(0.5)
    else:
        await harness.report.wait_for_event("connected")
    await harness.stop(timeout=1.0)
    assert harness.health()["state"] == "stopped"


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
            json.dumps(
                {
                    "type": "event",
                    "event": {
                        "source": "node",
                        "event": "value updated",
                        "nodeId": rng.choice(["7", None, 7.5]),
                        "args": args,
                    },
                }
            ),
            "bad_event",
        ),
        lambda: (
            json.dumps(
                {
                    "type": "event",
                    "event": {
                        "source": "node",
                        "event": "value updated",
                        "nodeId": 7,
                        "args": {**args, rng.choice(["commandClass", "property", "endpoint"]): [1]},
                    },
                }
            ),
            "bad_value",
        ),
        lambda: (
            json.dumps(
                {
                    "type": "event",
                    "event": {
                        "source": "node",
                        "event": rng.choice(["wake up", "sleep", "statistics updated"]),
                        "nodeId": 7,
                    },
                }
            ),
            None,
        ),
        lambda: (bytes(rng.randbytes(rng.randint(1, 32))), "binary"),
    ]
    return [rng.choice(makers)() for _ in range(count)]


async def test_thousands_of_malformed_frames_are_counted_and_harmless(zw, make_harness, caplog):
    harness = await connected(make_harness, zw)
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


async def test_a_frame_over_the_limit_costs_the_connection_only(zw, make_harness, clock):
    harness = await connected(make_harness, zw, max_frame_bytes=32 * 1024)
    await zw.send_raw(json.dumps({"type": "event", "event": {"pad": "x" * 50_000}}))
    lost = await harness.report.wait_for_event("disconnected")
    assert "max_frame_bytes" in (lost.error or "")
    await harness.waits_until(0.5)
    clock.advance(0.5)
    await harness.report.wait_for_event("connected", 2)
