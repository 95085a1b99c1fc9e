"""Zigbee2MQTT through a real broker: availability with its 75 s expiry, devices, states."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from services.integrations.zigbee2mqtt import Zigbee2MqttClient, Zigbee2MqttSettings
from tests.fakes.recorders import RecordingStates
from tests.integration.integrations.brokers import Publisher, topic_prefix
from tests.integration.integrations.layers import Stack, running_stack


@pytest.fixture
def states() -> RecordingStates:
    return RecordingStates()


@pytest.fixture
async def z2m(broker_url: str, states: RecordingStates) -> AsyncIterator[Stack]:
    settings = Zigbee2MqttSettings(base_topic=topic_prefix())
    async with running_stack(
        broker_url,
        lambda clock, report, hub: Zigbee2MqttClient(
            settings, clock=clock, report=report, on_state=states, mqtt=hub
        ),
    ) as stack:
        await stack.subscribed(f"{settings.base_topic}/#")
        yield stack


async def publish(publisher: Publisher, topic: str, payload: bytes | str) -> None:
    await asyncio.to_thread(publisher.publish, topic, payload)


async def test_available_expires_75_s_after_the_last_message(
    z2m: Stack, publisher: Publisher
) -> None:
    base, clock = z2m.layer.settings.base_topic, z2m.clock
    await publish(publisher, f"{base}/bridge/state", '{"state": "online"}')
    await z2m.report.wait_for_event("available", integration="zigbee2mqtt")
    await clock.wait_for_sleepers(1)  # the expiry timer
    clock.advance(74.9)
    await asyncio.sleep(0)
    assert z2m.report.events("zigbee2mqtt") == ["available"] and clock.sleepers == 1
    clock.advance(0.1)
    await z2m.report.wait_for_event("unavailable", integration="zigbee2mqtt")
    assert z2m.report.errors("unavailable", integration="zigbee2mqtt") == ["no message for 75 s"]
    assert z2m.layer.health()["available"] is False


async def test_a_message_in_between_pushes_the_expiry_back(
    z2m: Stack, publisher: Publisher, states: RecordingStates
) -> None:
    base, clock = z2m.layer.settings.base_topic, z2m.clock
    await publish(publisher, f"{base}/bridge/state", "online")
    await z2m.report.wait_for_event("available", integration="zigbee2mqtt")
    await clock.wait_for_sleepers(1)
    clock.advance(60)
    await publish(publisher, f"{base}/Door", '{"contact": true}')
    await states.wait_count(1)  # it arrived at t = 60
    clock.advance(15)  # 75 s after the first message: the timer wakes and sleeps on
    await clock.wait_for_sleepers(1)
    assert z2m.report.events("zigbee2mqtt") == ["available"]
    clock.advance(60)  # 75 s after the second one
    await z2m.report.wait_for_event("unavailable", integration="zigbee2mqtt")
    assert z2m.report.events("zigbee2mqtt") == ["available", "unavailable"]


async def test_the_bridge_going_offline_is_unavailable_at_once(
    z2m: Stack, publisher: Publisher, states: RecordingStates
) -> None:
    base = z2m.layer.settings.base_topic
    await publish(publisher, f"{base}/bridge/state", "online")
    await z2m.report.wait_for_event("available", integration="zigbee2mqtt")
    await publish(publisher, f"{base}/bridge/state", "offline")
    await z2m.report.wait_for_event("unavailable", integration="zigbee2mqtt")
    assert z2m.report.errors("unavailable", integration="zigbee2mqtt") == ["bridge offline"]
    await publish(publisher, f"{base}/Door", '{"contact": true}')  # still offline
    await states.wait_count(1)
    assert z2m.report.events("zigbee2mqtt") == ["available", "unavailable"]


async def test_device_messages_become_entity_states(
    z2m: Stack, publisher: Publisher, states: RecordingStates
) -> None:
    base = z2m.layer.settings.base_topic
    devices = [
        {"friendly_name": "Coordinator", "type": "Coordinator", "ieee_address": "0x0"},
        {"friendly_name": "Front Door", "type": "EndDevice", "ieee_address": "0x1"},
    ]
    await publish(publisher, f"{base}/bridge/devices", json.dumps(devices))
    await publish(
        publisher, f"{base}/Front Door", '{"contact": false, "battery": 90, "linkquality": 7}'
    )
    await publish(publisher, f"{base}/Front Door/set", '{"state": "ON"}')  # a command: ignored
    await publish(publisher, f"{base}/Front Door", '{"contact": true}')
    await publish(publisher, f"{base}/Front Door/availability", '{"state": "offline"}')
    await states.wait_count(3)
    await z2m.layer.sink.wait_idle()
    assert [(c.entity_id, c.state, c.attributes) for c in states.calls] == [
        ("zigbee2mqtt.front_door", "on", {"contact": False, "battery": 90}),
        ("zigbee2mqtt.front_door", "off", {"contact": True, "battery": 90}),
        ("zigbee2mqtt.front_door", "unavailable", {"contact": True, "battery": 90}),
    ]
    first = states.calls[0]
    assert (first.source, first.name, first.at) == (
        "zigbee2mqtt", "Front Door", z2m.clock.now()
    )  # fmt: skip
    health = z2m.layer.health()
    assert health["devices"] == 1 and health["states_written"] == 3 and health["malformed"] == {}


async def test_malformed_messages_are_counted_and_the_layer_carries_on(
    z2m: Stack, publisher: Publisher, states: RecordingStates
) -> None:
    base = z2m.layer.settings.base_topic
    for topic, payload in [
        (f"{base}/Door", b"{not json"),
        (f"{base}/Door", b"[1, 2]"),
        (f"{base}/Door", b'{"contact": "open"}'),
        (f"{base}/bridge/state", b"sleepy"),
        (f"{base}/bridge/whatever", b"{}"),
        (f"{base}/Door", b'{"contact": false}'),
    ]:
        await publish(publisher, topic, payload)
    await states.wait_count(1)
    # "sleepy" is neither online/offline nor JSON: bad_json, like "{not json".
    assert z2m.layer.health()["malformed"] == {
        "bad_json": 2, "not_object": 1, "wrong_type": 1, "unknown_topic": 1,
    }  # fmt: skip
    assert states.calls[0].state == "on"
