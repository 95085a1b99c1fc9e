"""Zigbee2MQTT over the worker's MQTT connection: bridge state, devices, device states.

Subscribes ``<base>/#`` on the MQTT hub. Device messages become entity states through the
injected ``on_state`` (``alarm.services.aupdate_entity_state``), in order, one at a time (see
``z2m_parse`` for the mapping onto ``zigbee2mqtt.<device>``). "Available" means the bridge is
not offline and a message arrived in the last ``stale_after`` seconds (75 by default): the
expiry is one timer on the injected clock, re-armed lazily when it comes due (so a busy network
costs one wake-up per period, not one per message), never a poll. ``available`` and
``unavailable`` are reported on transitions only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from services.clock import Clock
from services.integrations import z2m_parse as parse
from services.integrations.config_spec import EffectiveConfig
from services.integrations.mqtt import MqttHub
from services.integrations.payloads import malformed_log
from services.integrations.sink import OrderedSink

logger = logging.getLogger(__name__)

SOURCE = "zigbee2mqtt"


@dataclass(frozen=True)
class Zigbee2MqttSettings:
    base_topic: str = "zigbee2mqtt"
    stale_after: float = 75.0
    ignored_attributes: tuple[str, ...] = ("linkquality", "last_seen", "elapsed")


def settings_from(config: EffectiveConfig) -> Zigbee2MqttSettings:
    values = config.values
    return Zigbee2MqttSettings(
        base_topic=str(values["base_topic"]),
        stale_after=float(values["stale_after"]),
        ignored_attributes=tuple(values["ignored_attributes"]),
    )


class Zigbee2MqttClient:
    name = SOURCE

    def __init__(
        self,
        settings: Zigbee2MqttSettings,
        *,
        clock: Clock,
        report: Callable[..., None],
        on_state: Callable[..., Awaitable[bool]],
        mqtt: MqttHub,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self._report = report
        self._on_state = on_state
        self._mqtt = mqtt
        self.errors = malformed_log(logger, SOURCE, clock.monotonic)
        self.liveness = parse.Liveness(settings.stale_after)
        self.devices = parse.Devices(ignored=frozenset(settings.ignored_attributes))
        self.known: dict[str, parse.DeviceInfo] = {}
        self.sink: OrderedSink[parse.EntityUpdate] = OrderedSink(SOURCE, self._deliver, self.errors)
        self.received = 0
        self._armed = asyncio.Event()

    async def run(self, stopping: asyncio.Event) -> None:
        unsubscribe = self._mqtt.subscribe(f"{self.settings.base_topic}/#", self._on_message)
        sink = asyncio.create_task(self.sink.run(), name="zigbee2mqtt-sink")
        expiry = asyncio.create_task(self._expire(), name="zigbee2mqtt-liveness")
        try:
            await stopping.wait()
        finally:
            unsubscribe()
            expiry.cancel()
            # What arrived before the stop is still written (bounded by the wrapper's timeout).
            waiting = asyncio.ensure_future(self.sink.wait_idle())
            await asyncio.wait({waiting, sink}, return_when=asyncio.FIRST_COMPLETED)
            waiting.cancel()
            sink.cancel()
            await asyncio.wait({sink, expiry})
            if self.liveness.available:
                self.liveness.available = False
                self._report(SOURCE, "unavailable", error="stopped")

    def health(self) -> dict[str, Any]:
        return {
            "available": self.liveness.available,
            "bridge_online": self.liveness.bridge_online,
            "devices": len(self.known) or len(self.devices.attributes),
            "received": self.received,
            "states_written": self.sink.delivered,
            "states_waiting": self.sink.waiting,
            "malformed": self.errors.as_dict(),
        }

    # --- messages ------------------------------------------------------------------------

    def _on_message(self, topic: str, payload: bytes) -> None:
        self.received += 1
        route = parse.route(self.settings.base_topic, topic, self.known.keys())
        bridge_online: bool | None = None
        try:
            if route.kind == "bridge_state":
                bridge_online = parse.online_state(payload)
            elif route.kind == "bridge_devices":
                self.known = parse.devices(payload)
            elif route.kind == "device":
                self.sink.put(self.devices.on_state(route.device, parse.device_state(payload)))
            elif route.kind == "availability":
                update = self.devices.on_availability(route.device, parse.online_state(payload))
                if update is not None:
                    self.sink.put(update)
            elif route.kind == "unknown":
                raise parse.Malformed("unknown_topic", topic)
        except parse.Malformed as exc:
            self.errors.record(exc.kind, f"{topic}: {exc.detail}", topic=topic[:200])
        # Any message, even a malformed one, shows that the bridge and broker are alive.
        self._liveness_changed(self.liveness.on_message(self.clock.monotonic(), bridge_online))

    async def _deliver(self, update: parse.EntityUpdate) -> None:
        await self._on_state(
            update.entity_id,
            update.state,
            update.attributes,
            source=SOURCE,
            name=update.name,
            at=self.clock.now(),
        )

    # --- liveness ------------------------------------------------------------------------

    def _liveness_changed(self, available: bool | None) -> None:
        if available is None:
            return
        details = {"bridge_state": _bridge_text(self.liveness.bridge_online)}
        if available:
            self._armed.set()
            self._report(SOURCE, "available", details=details)
        else:
            error = (
                "bridge offline"
                if self.liveness.bridge_online is False
                else f"no message for {self.settings.stale_after:g} s"
            )
            self._report(SOURCE, "unavailable", error=error, details=details)
        logger.info(
            "Zigbee2MQTT availability changed",
            extra={"event": "zigbee2mqtt.available" if available else "zigbee2mqtt.unavailable"},
        )

    async def _expire(self) -> None:
        while True:
            expires = self.liveness.expires_at()
            if expires is None:
                self._armed.clear()
                await self._armed.wait()
                continue
            remaining = expires - self.clock.monotonic()
            if remaining > 0:
                await self.clock.sleep(remaining)
                continue
            self._liveness_changed(self.liveness.on_timer(self.clock.monotonic()))


def _bridge_text(online: bool | None) -> str:
    return "unknown" if online is None else "online" if online else "offline"
