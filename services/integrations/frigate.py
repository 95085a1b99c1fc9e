"""Frigate over the worker's MQTT connection: availability and detections.

Subscribes ``<prefix>/available`` (``online``/``offline``: reported as ``available`` and
``unavailable`` on transitions) and ``<prefix>/events``, whose messages are stored as
``FrigateDetection`` rows through the injected ``store`` (merged per event id), in order, one
at a time. Nothing else under the prefix is subscribed (snapshots are JPEG bytes, counts and
stats are not used). ``tasks.cleanup_frigate_detections`` deletes old rows hourly.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from services.clock import Clock
from services.integrations import frigate_parse as parse
from services.integrations.config_spec import EffectiveConfig
from services.integrations.mqtt import MqttHub
from services.integrations.payloads import Malformed, malformed_log
from services.integrations.sink import OrderedSink

logger = logging.getLogger(__name__)

SOURCE = "frigate"


@dataclass(frozen=True)
class FrigateSettings:
    topic_prefix: str = "frigate"


def settings_from(config: EffectiveConfig) -> FrigateSettings:
    return FrigateSettings(topic_prefix=str(config.values["topic_prefix"]))


class FrigateClient:
    name = SOURCE

    def __init__(
        self,
        settings: FrigateSettings,
        *,
        clock: Clock,
        report: Callable[..., None],
        on_state: Callable[..., Awaitable[bool]] | None = None,  # detections are rows, not states
        mqtt: MqttHub,
        store: Callable[[parse.Detection], Awaitable[Any]],
    ) -> None:
        self.settings = settings
        self.clock = clock
        self._report = report
        self._mqtt = mqtt
        self.errors = malformed_log(logger, SOURCE, clock.monotonic)
        self.sink: OrderedSink[parse.Detection] = OrderedSink(SOURCE, store, self.errors)
        self.available: bool | None = None
        self.received = 0

    async def run(self, stopping: asyncio.Event) -> None:
        prefix = self.settings.topic_prefix
        unsubscribes = [
            self._mqtt.subscribe(f"{prefix}/available", self._on_available),
            self._mqtt.subscribe(f"{prefix}/events", self._on_event),
        ]
        sink = asyncio.create_task(self.sink.run(), name="frigate-sink")
        try:
            await stopping.wait()
        finally:
            for unsubscribe in unsubscribes:
                unsubscribe()
            waiting = asyncio.ensure_future(self.sink.wait_idle())
            await asyncio.wait({waiting, sink}, return_when=asyncio.FIRST_COMPLETED)
            waiting.cancel()
            sink.cancel()
            await asyncio.wait({sink})
            if self.available:
                self.available = None
                self._report(SOURCE, "unavailable", error="stopped")

    def health(self) -> dict[str, Any]:
        return {
            "available": self.available,
            "received": self.received,
            "detections_written": self.sink.delivered,
            "detections_waiting": self.sink.waiting,
            "malformed": self.errors.as_dict(),
        }

    def _on_available(self, topic: str, payload: bytes) -> None:
        self.received += 1
        try:
            available = parse.available(payload)
        except Malformed as exc:
            self.errors.record(exc.kind, f"{topic}: {exc.detail}", topic=topic)
            return
        if available == self.available:
            return
        self.available = available
        if available:
            self._report(SOURCE, "available")
        else:
            self._report(SOURCE, "unavailable", error="Frigate reported offline")
        logger.info(
            "Frigate availability changed",
            extra={"event": "frigate.available" if available else "frigate.unavailable"},
        )

    def _on_event(self, topic: str, payload: bytes) -> None:
        self.received += 1
        try:
            self.sink.put(parse.event(payload))
        except Malformed as exc:
            self.errors.record(exc.kind, f"{topic}: {exc.detail}", topic=topic)
