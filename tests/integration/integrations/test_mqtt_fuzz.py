"""Thousands of random and malformed messages through the real broker into Zigbee2MQTT and
Frigate: every one is counted under the right kind, nothing crashes, valid ones still land."""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from collections.abc import Callable
from typing import Any

from services.integrations import frigate_parse, z2m_parse
from services.integrations.frigate import FrigateClient, FrigateSettings
from services.integrations.frigate_parse import Detection
from services.integrations.payloads import Malformed
from services.integrations.zigbee2mqtt import Zigbee2MqttClient, Zigbee2MqttSettings
from tests.fakes.recorders import Recorder, RecordingStates
from tests.integration.integrations.brokers import Publisher, topic_prefix
from tests.integration.integrations.layers import running_stack

MAX_PAYLOAD = 64 * 1024
SEED = 20250601


def random_payload(rng: random.Random) -> bytes:
    shape = rng.randrange(10)
    if shape == 0:
        return rng.randbytes(rng.randrange(0, 300))  # mostly not UTF-8
    if shape == 1:
        return b"[" * rng.randrange(1, 50_000)  # unbalanced, or past the recursion limit
    if shape == 2:
        return json.dumps(rng.choice([[], 1, "s", None, 2.5, True])).encode()
    if shape == 3:
        return json.dumps({"contact": rng.choice(["yes", 1, [], {}])}).encode()
    if shape == 4:
        return json.dumps({f"k{i}": i for i in range(rng.randrange(150, 260))}).encode()
    if shape == 5:
        return rng.choice([b'{"state": "\\ud800"}', b'{"a": "\\u0000"}'])  # unstorable text
    if shape == 6:
        return json.dumps(
            {"type": rng.choice(["new", "x"]), "after": rng.choice([{}, [], 3])}
        ).encode()
    if shape == 7:
        return bytes(rng.choice(b'{}[]":,0123456789truefalsn ') for _ in range(rng.randrange(60)))
    if shape == 8:
        value = {
            "id": "e",
            "camera": "c",
            "label": "l",
            "top_score": rng.choice(["x", True, 1e400]),
        }
        return (
            json.dumps({"type": "update", "after": value}).encode().replace(b"Infinity", b"1e400")
        )
    return json.dumps({"contact": rng.random() < 0.5, "battery": rng.randrange(100)}).encode()


def expected_kind(parse: Callable[[bytes], Any], payload: bytes) -> str | None:
    try:
        parse(payload)
    except Malformed as exc:
        return exc.kind
    return None


async def test_fuzzed_payloads_are_counted_and_the_layers_survive(
    broker_url: str, publisher: Publisher
) -> None:
    rng = random.Random(SEED)
    base, prefix = topic_prefix(), topic_prefix()
    states, stored = RecordingStates(), Recorder[str]()

    async def store(detection: Detection) -> None:
        stored.record(detection.event_id)

    async with running_stack(
        broker_url,
        lambda clock, report, hub: Zigbee2MqttClient(
            Zigbee2MqttSettings(base_topic=base), clock=clock, report=report,
            on_state=states, mqtt=hub,
        ),
        lambda clock, report, hub: FrigateClient(
            FrigateSettings(topic_prefix=prefix), clock=clock, report=report,
            mqtt=hub, store=store,
        ),
        max_payload=MAX_PAYLOAD,
    ) as stack:  # fmt: skip
        z2m, frigate = stack.layers
        await stack.subscribed(f"{base}/#", f"{prefix}/available", f"{prefix}/events")
        messages: list[tuple[str, bytes]] = []
        z2m_kinds: Counter[str] = Counter()
        frigate_kinds: Counter[str] = Counter()
        valid_states = valid_events = too_large = 0
        for n in range(3000):
            payload = random_payload(rng)
            target = n % 6
            if target <= 2:  # a device topic
                topic = f"{base}/device{n % 7}"
                kind = expected_kind(z2m_parse.device_state, payload)
            elif target == 3:  # unknown and bridge topics
                topic = rng.choice([f"{base}/bridge/x{n}", f"{base}/bridge/state", f"{base}//x"])
                route = z2m_parse.route(base, topic)
                kind = (
                    "unknown_topic"
                    if route.kind == "unknown"
                    else expected_kind(z2m_parse.online_state, payload)
                )
            elif target == 4:
                topic = f"{prefix}/events"
                kind = expected_kind(frigate_parse.event, payload)
            else:
                topic = f"{prefix}/available"
                kind = expected_kind(frigate_parse.available, payload)
            if n % 150 == 0:  # now and then, far too large
                payload, kind = b"{" + rng.randbytes(MAX_PAYLOAD + rng.randrange(1, 200_000)), None
                too_large += 1
            elif target <= 3 and kind is not None:
                z2m_kinds[kind] += 1
            elif target <= 3 and topic.startswith(f"{base}/device"):
                valid_states += 1
            elif target >= 4 and kind is not None:
                frigate_kinds[kind] += 1
            elif target == 4:
                valid_events += 1
            messages.append((topic, payload))
        # Sentinels: once they are through, everything published before them is.
        messages.append((f"{base}/sentinel", b'{"contact": true}'))
        valid = {"id": "sentinel", "camera": "c", "label": "l"}
        messages.append((f"{prefix}/events", json.dumps({"type": "new", "after": valid}).encode()))
        await asyncio.to_thread(publisher.publish_many, messages)
        await states.wait_for(lambda: any(c.entity_id.endswith("sentinel") for c in states.calls))
        await stored.wait_for(lambda: "sentinel" in stored.calls)
        await z2m.sink.wait_idle()

        assert stack.mqtt.health()["malformed"] == {"too_large": too_large}
        assert z2m.health()["malformed"] == dict(z2m_kinds)
        assert frigate.health()["malformed"] == dict(frigate_kinds)
        assert len(states.calls) == valid_states + 1 and len(stored.calls) == valid_events + 1
        assert sum(z2m_kinds.values()) + sum(frigate_kinds.values()) > 1500
        assert stack.mqtt.received == len(messages)
        assert stack.mqtt.health()["state"] == "connected"
        assert "disconnected" not in stack.report.events("mqtt")  # never dropped
        assert stack.mqtt.health()["connects"] == 1
