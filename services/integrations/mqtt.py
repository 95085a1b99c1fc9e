"""The MQTT transport: paho-mqtt 2 driven by the worker's asyncio loop, and the topic router.

paho runs on our event loop through its external-loop API (``on_socket_*`` callbacks,
``loop_read``/``loop_write``/``loop_misc``), not on a ``loop_start()`` thread: that thread
wakes every second even when nothing happens (see ``bench/mqtt_ingest.py``), while here an idle
connection costs one timer per keepalive period (the ping) and its answer. Only the blocking
part of paho, the TCP/TLS connect and the CONNECT packet, runs in a thread, before the loop
takes the socket over; every paho callback then runs on the loop thread, so no hop is needed.

``MqttHub`` (``mqtt_hub.py``, one per worker) owns the subscriptions; each connected client
subscribes all of them after every CONNACK (clean sessions), which is how subscriptions are
restored after a reconnect or a restart for a configuration change.

``MqttClient`` is one integration client (shaped as ``component.py`` says): MQTT 5 with a
fallback to 3.1.1 when the broker refuses the protocol version (the embedded amqtt broker),
reconnects with an exponential backoff (``reconnect_min`` doubling to ``reconnect_max``, reset
after a CONNACK), and reports connecting/connected/disconnected/auth_failed transitions.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from services.backoff import exponential
from services.clock import Clock
from services.integrations.mqtt_hub import Handler, MqttHub
from services.integrations.mqtt_session import Connection
from services.integrations.mqtt_settings import (
    AUTH_FAILURES,
    UNSUPPORTED_PROTOCOL,
    MqttSettings,
    client_id,
    parse_url,
)
from services.integrations.payloads import malformed_log

logger = logging.getLogger(__name__)

Report = Callable[..., None]
PROTOCOLS = {"5": paho.MQTTv5, "3.1.1": paho.MQTTv311}
__all__ = ["Handler", "MqttClient", "MqttHub", "MqttSettings"]


@dataclass
class _Outcome:
    connected: bool = False  # a CONNACK accepted us: the backoff starts over
    fallback: bool = False  # the broker refused MQTT 5: try 3.1.1 at once


class MqttClient:
    name = "mqtt"

    def __init__(
        self,
        settings: MqttSettings,
        *,
        clock: Clock,
        report: Report,
        on_state: Callable[..., Any] | None = None,  # plain MQTT has no entities of its own
        hub: MqttHub,
        worker_id: str,
        resolve_embedded: Callable[[], str] | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self._report = report
        self.hub = hub
        self.client_id = client_id(settings.client_id_prefix, worker_id)
        self._resolve_embedded = resolve_embedded
        self._connection: Connection | None = None
        self._protocol = "3.1.1" if settings.protocol == "3.1.1" else "5"
        self._state = "stopped"
        self._broker = settings.address
        self._connected_since: datetime | None = None
        self._connects = 0
        self._last_error: str | None = None
        self.received = 0
        self.errors = malformed_log(logger, "mqtt", clock.monotonic)
        # Filters the broker acknowledged on the current connection; the event is replaced
        # at every change (tests and health wait on it: "subscriptions restored").
        self.subscribed: set[str] = set()
        self.subscribed_changed = asyncio.Event()

    # --- the component -----------------------------------------------------------------

    async def run(self, stopping: asyncio.Event) -> None:
        attempt = 0
        try:
            while not stopping.is_set():
                outcome = await self._connect_once(stopping)
                if stopping.is_set():
                    break
                if outcome.fallback:
                    continue
                attempt = 1 if outcome.connected else attempt + 1
                delay = exponential(
                    attempt, base=self.settings.reconnect_min, cap=self.settings.reconnect_max
                )
                self._state = "backoff"
                logger.info(
                    "MQTT reconnects later",
                    extra={"event": "mqtt.reconnect_scheduled", "delay": delay},
                )
                await _sleep_unless(self.clock, delay, stopping)
        finally:
            if self._state == "connecting":  # stopped before the broker answered
                self._report("mqtt", "disconnected", error="stopped", details=self._details())
            self._state = "stopped"

    def health(self) -> dict[str, Any]:
        since = self._connected_since
        return {
            "state": self._state,
            "broker": self._broker,
            "protocol": self._protocol,
            "client_id": self.client_id,
            "connected_since": since.isoformat(timespec="seconds") if since else None,
            "connects": self._connects,
            "last_error": self._last_error,
            "subscriptions": len(self.hub.filters),
            "subscribed": len(self.subscribed),
            "received": self.received,
            "malformed": {**self.errors.as_dict(), **self.hub.errors.as_dict()},
        }

    # --- used by the hub -------------------------------------------------------------------

    def subscribe(self, filters: list[str]) -> None:
        if self._connection is not None:
            self._connection.subscribe(filters)

    def unsubscribe(self, topic_filter: str) -> None:
        if self._connection is not None:
            self._connection.unsubscribe(topic_filter)
        self._set_subscribed(self.subscribed - {topic_filter})

    def _on_subscribed(self, filters: list[str]) -> None:
        logger.info(
            "MQTT subscriptions acknowledged",
            extra={"event": "mqtt.subscribed", "filters": filters},
        )
        # A layer may have unsubscribed while the SUBACK was on its way.
        self._set_subscribed(self.subscribed | (set(filters) & set(self.hub.filters)))

    def _set_subscribed(self, filters: set[str]) -> None:
        if filters != self.subscribed:
            self.subscribed = filters
            changed, self.subscribed_changed = self.subscribed_changed, asyncio.Event()
            changed.set()

    # --- one connection ------------------------------------------------------------------

    async def _connect_once(self, stopping: asyncio.Event) -> _Outcome:
        self._state = "connecting"
        try:
            host, port = await self._target()
        except Exception as exc:  # the embedded broker did not start, ...
            self._lost(f"no broker: {exc}")
            return _Outcome()
        self._broker = f"{host}:{port}"
        self._report("mqtt", "connecting", details=self._details())
        connection = Connection(
            self._new_paho(),
            asyncio.get_running_loop(),
            self._on_message,
            self.settings,
            on_subscribed=self._on_subscribed,
        )
        try:
            await connection.open(host, port)
        except (OSError, ssl.SSLError, ValueError) as exc:
            self._lost(f"cannot connect to {self._broker}: {_describe(exc)}")
            return _Outcome()
        try:
            return await self._serve(connection, stopping)
        finally:
            connection.close()
            self._connection = None
            self.hub.detach(self)
            self._set_subscribed(set())

    async def _serve(self, connection: Connection, stopping: asyncio.Event) -> _Outcome:
        reason = await connection.wait_connack(stopping, within=self.settings.connect_timeout)
        if stopping.is_set():
            return _Outcome()
        if reason is None:
            error = connection.lost_reason or "no CONNACK from the broker in time"
            if self._may_fall_back():
                # Some 3.1.1-only brokers (amqtt) never answer an MQTT 5 CONNECT.
                return self._fall_back(f"no answer to MQTT 5 ({error})")
            self._lost(error)
            return _Outcome()
        if reason.is_failure:
            if str(reason) == UNSUPPORTED_PROTOCOL and self._may_fall_back():
                return self._fall_back(str(reason))
            return self._refused(reason)
        self._connected(connection)
        lost = await connection.wait_lost(stopping)
        if stopping.is_set():
            connection.disconnect()
            self._lost("stopped")
        else:
            self._lost(lost)
        return _Outcome(connected=True)

    def _connected(self, connection: Connection) -> None:
        self._connection = connection
        self._connects += 1
        self._state = "connected"
        self._last_error = None
        self._connected_since = self.clock.now()
        logger.info(
            "MQTT connected",
            extra={"event": "mqtt.connected", "broker": self._broker, "protocol": self._protocol},
        )
        self.hub.attach(self)
        self._report("mqtt", "connected", details=self._details())

    def _may_fall_back(self) -> bool:
        return self._protocol == "5" and self.settings.protocol == "auto"

    def _fall_back(self, why: str) -> _Outcome:
        logger.info(
            "MQTT 5 refused; using 3.1.1",
            extra={"event": "mqtt.protocol_fallback", "broker": self._broker, "reason": why},
        )
        self._protocol = "3.1.1"
        return _Outcome(fallback=True)

    def _refused(self, reason: ReasonCode) -> _Outcome:
        text = str(reason)
        self._last_error = f"the broker refused the connection: {text}"
        self._state = "disconnected"
        event = "auth_failed" if text in AUTH_FAILURES else "disconnected"
        logger.warning(
            "MQTT connection refused",
            extra={"event": f"mqtt.{event}", "broker": self._broker, "reason": text},
        )
        self._report("mqtt", event, error=self._last_error, details=self._details())
        return _Outcome()

    def _lost(self, error: str) -> None:
        was_connected = self._state == "connected"
        self._state = "disconnected"
        self._connected_since = None
        if error != "stopped":
            self._last_error = error
        logger.log(
            logging.INFO if error == "stopped" else logging.WARNING,
            "MQTT disconnected" if was_connected else "MQTT connect failed",
            extra={
                "event": "mqtt.disconnected" if was_connected else "mqtt.connect_failed",
                "broker": self._broker,
                "error": error,
            },
        )
        self._report("mqtt", "disconnected", error=error, details=self._details())

    def _on_message(self, message: paho.MQTTMessage) -> None:
        self.received += 1
        payload = bytes(message.payload)
        try:
            topic = message.topic
        except UnicodeDecodeError:
            self.errors.record("bad_topic", repr(message._topic[:100]))
            return
        if len(payload) > self.settings.max_payload:
            self.errors.record("too_large", f"{topic}: {len(payload)} bytes", topic=topic)
            return
        self.hub.dispatch(topic, payload)

    # --- helpers ---------------------------------------------------------------------------

    async def _target(self) -> tuple[str, int]:
        if not self.settings.embedded:
            return self.settings.host, self.settings.port
        if self._resolve_embedded is None:
            raise RuntimeError("the embedded broker is not available in this process")
        parts = parse_url(await asyncio.to_thread(self._resolve_embedded))
        return parts["host"], parts["port"]

    def _new_paho(self) -> paho.Client:
        v5 = self._protocol == "5"
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=PROTOCOLS[self._protocol],
            clean_session=None if v5 else True,
            reconnect_on_failure=False,  # never a blocking reconnect on our loop: we retry
        )
        if self.settings.username:
            client.username_pw_set(self.settings.username, self.settings.password or None)
        return client

    def _details(self) -> dict[str, Any]:
        return {
            "broker": self._broker,
            "embedded": self.settings.embedded,
            "tls": self.settings.tls,
            "protocol": self._protocol,
            "client_id": self.client_id,
        }


def _describe(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__


async def _sleep_unless(clock: Clock, seconds: float, stopping: asyncio.Event) -> None:
    sleep = asyncio.ensure_future(clock.sleep(seconds))
    stop = asyncio.ensure_future(stopping.wait())
    try:
        await asyncio.wait({sleep, stop}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        sleep.cancel()
        stop.cancel()
