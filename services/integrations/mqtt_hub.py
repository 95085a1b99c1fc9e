"""The worker's MQTT subscriptions: topic filters -> handlers, shared by the layers on top.

Layers such as Zigbee2MQTT and Frigate subscribe topic filters with a handler ``(topic,
payload bytes)`` that runs on the event loop. The hub outlives the MQTT client (which a
configuration change replaces): whichever client is connected subscribes every filter after
its CONNACK. A handler that raises is counted and logged at a bounded rate, never propagated.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from services.integrations.mqtt_settings import filter_problem, matches
from services.integrations.payloads import malformed_log

if TYPE_CHECKING:
    from services.integrations.mqtt import MqttClient

logger = logging.getLogger(__name__)

Handler = Callable[[str, bytes], None]


class MqttHub:
    """The worker's MQTT subscriptions and the connected client they go through, if any."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._routes: dict[str, list[Handler]] = {}
        self._client: MqttClient | None = None
        self.errors = malformed_log(logger, "mqtt", monotonic)

    def subscribe(self, topic_filter: str, handler: Handler) -> Callable[[], None]:
        """Route messages matching ``topic_filter`` to ``handler``; returns unsubscribe."""
        if problem := filter_problem(topic_filter):
            raise ValueError(f"{topic_filter!r}: {problem}")
        handlers = self._routes.setdefault(topic_filter, [])
        handlers.append(handler)
        if len(handlers) == 1 and self._client is not None:
            self._client.subscribe([topic_filter])

        def unsubscribe() -> None:
            remaining = self._routes.get(topic_filter, [])
            if handler in remaining:
                remaining.remove(handler)
                if not remaining:
                    del self._routes[topic_filter]
                    if self._client is not None:
                        self._client.unsubscribe(topic_filter)

        return unsubscribe

    @property
    def filters(self) -> list[str]:
        return list(self._routes)

    @property
    def connected(self) -> bool:
        return self._client is not None

    def attach(self, client: MqttClient) -> None:
        self._client = client
        if self._routes:
            client.subscribe(list(self._routes))

    def detach(self, client: MqttClient) -> None:
        if self._client is client:
            self._client = None

    def dispatch(self, topic: str, payload: bytes) -> None:
        routed = False
        for topic_filter, handlers in list(self._routes.items()):
            if not matches(topic_filter, topic):
                continue
            for handler in list(handlers):
                routed = True
                try:
                    handler(topic, payload)
                except Exception as exc:  # a layer's bug must not take the transport down
                    self.errors.record("handler_error", f"{topic}: {type(exc).__name__}: {exc}")
        if not routed:
            self.errors.record("unrouted", topic)
