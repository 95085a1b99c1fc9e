"""Running the MQTT transport with a layer (Zigbee2MQTT, Frigate) on top, for tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from services.clock import FakeClock
from services.integrations.mqtt import MqttClient, MqttHub
from services.integrations.mqtt_settings import MqttSettings, parse_url
from tests.fakes.recorders import RecordingReport
from tests.fakes.waitable import TIMEOUT


@dataclass
class Stack:
    clock: FakeClock
    report: RecordingReport
    hub: MqttHub
    mqtt: MqttClient
    layer: Any
    layers: list[Any]

    async def subscribed(self, *filters: str) -> None:
        async with asyncio.timeout(TIMEOUT):
            while not set(filters) <= self.mqtt.subscribed:
                await self.mqtt.subscribed_changed.wait()


@asynccontextmanager
async def running_stack(
    broker_url: str,
    *make_layers: Callable[[FakeClock, RecordingReport, MqttHub], Any],
    max_payload: int = 1_048_576,
) -> AsyncIterator[Stack]:
    """The MQTT client and its layers, all running on one FakeClock until the block ends;
    ``Stack.layer`` is the first layer, ``Stack.layers`` all of them."""
    clock, report, hub = FakeClock(), RecordingReport(), MqttHub()
    parts = parse_url(broker_url)
    settings = MqttSettings(
        host=parts["host"], port=parts["port"], connect_timeout=2.0, max_payload=max_payload
    )
    mqtt = MqttClient(settings, clock=clock, report=report, hub=hub, worker_id="test")
    layers = [make(clock, report, hub) for make in make_layers]
    stopping = asyncio.Event()
    tasks = [asyncio.create_task(c.run(stopping)) for c in (mqtt, *layers)]
    try:
        yield Stack(clock, report, hub, mqtt, layers[0], layers)
    finally:
        stopping.set()
        async with asyncio.timeout(TIMEOUT):
            await asyncio.gather(*tasks)
