"""The WebSocket clients (Home Assistant, Z-Wave JS) under test: each fake server with the
entities the tests know, the client that talks to it with the tests' settings, and that
client's run() as a task with the recorders and the fake clock it was built with."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from services.integrations.home_assistant import HomeAssistantClient, HomeAssistantSettings
from services.integrations.ws_client import WebSocketClient
from services.integrations.ws_support import OnState
from services.integrations.zwavejs import ZwaveJsClient, ZwaveJsSettings
from tests.fakes.home_assistant_server import FakeHomeAssistant
from tests.fakes.recorders import RecordingReport, RecordingRng, RecordingStates, WatchedClock
from tests.fakes.zwavejs_server import FakeZwaveJs

H, T = 30.0, 10.0  # every test client's heartbeat interval and pong timeout
HA_DOOR = "binary_sensor.front_door"
ZW_DOOR = "zwavejs.node_7_notification_access_control_door_state"

type Fake = FakeHomeAssistant | FakeZwaveJs


# The two fakes as the tests know them: conftest's fixtures ``ha`` and ``zw``.
async def home_assistant() -> AsyncIterator[FakeHomeAssistant]:
    """Started, with the front door (closed), a lock and a power sensor."""
    async with FakeHomeAssistant() as fake:
        fake.set_state(
            HA_DOOR,
            "off",
            {"friendly_name": "Front door", "device_class": "door"},
            last_changed="2025-06-01T10:00:00+00:00",
        )
        fake.set_state("lock.back", "locked", {"friendly_name": "Back door"})
        fake.set_state("sensor.power", "230", {"unit_of_measurement": "W"})
        yield fake


async def zwavejs() -> AsyncIterator[FakeZwaveJs]:
    """Started, with node 7 (the front door, closed, and its battery; a configuration
    parameter, which is no entity) and node 12 (a binary sensor)."""
    async with FakeZwaveJs() as fake:
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


def client_for(
    fake: Fake, *, url: str | None = None, **overrides: Any
) -> tuple[type[WebSocketClient[Any]], Any]:
    """The client class that talks to ``fake``, and its settings: the tests' heartbeat, a
    short close timeout, ``url`` (default: the fake's) and ``overrides``."""
    if isinstance(fake, FakeHomeAssistant):
        ha = HomeAssistantSettings(
            url or fake.url, fake.token, heartbeat_interval=H, pong_timeout=T, close_timeout=0.2
        )
        return HomeAssistantClient, dataclasses.replace(ha, **overrides)
    zw = ZwaveJsSettings(url or fake.url, heartbeat_interval=H, pong_timeout=T, close_timeout=0.2)
    return ZwaveJsClient, dataclasses.replace(zw, **overrides)


@dataclass
class Harness:
    client: WebSocketClient[Any]
    clock: WatchedClock
    report: RecordingReport
    states: RecordingStates
    rng: RecordingRng
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    def start(self) -> Harness:
        self.task = asyncio.create_task(self.client.run(self.stopping))
        return self

    async def stop(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        self.stopping.set()
        if self.task is not None:
            async with asyncio.timeout(timeout):
                await self.task

    async def waits_until(self, *seconds_from_now: float) -> None:
        """Wait until the client's only waits in progress end ``seconds_from_now``."""
        now = self.clock.monotonic()
        await self.clock.wait_for_deadlines([now + s for s in seconds_from_now])

    def health(self) -> dict[str, Any]:
        return self.client.health()


class Harnesses:
    """Makes harnesses on one clock; ``stop_all`` at the end of the test stops them all."""

    def __init__(self, clock: WatchedClock) -> None:
        self.clock = clock
        self.made: list[Harness] = []

    def make(self, fake: Fake, *, on_state: OnState | None = None, **settings: Any) -> Harness:
        """A client for ``fake``, not started; ``settings`` as ``client_for`` takes them.
        With another ``on_state``, the harness's ``states`` records nothing."""
        report, states, rng = RecordingReport(), RecordingStates(), RecordingRng(0.0)
        client_class, client_settings = client_for(fake, **settings)
        client = client_class(
            client_settings, clock=self.clock, report=report, on_state=on_state or states, rng=rng
        )
        harness = Harness(client, self.clock, report, states, rng)
        self.made.append(harness)
        return harness

    def start(self, fake: Fake, **settings: Any) -> Harness:
        return self.make(fake, **settings).start()

    async def connected(self, fake: Fake, **settings: Any) -> Harness:
        harness = self.start(fake, **settings)
        await harness.report.wait_for_event("connected")
        return harness

    async def stop_all(self) -> None:
        for harness in self.made:
            await harness.stop()
