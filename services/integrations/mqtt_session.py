"""One paho client on one socket, driven by the asyncio loop (paho's external-loop API).

``open()`` runs paho's blocking connect (TCP, TLS handshake, the CONNECT packet) in a thread;
only then does the loop take the socket: a reader calls ``loop_read``, a writer (registered
only while paho has bytes queued) calls ``loop_write``, and one timer calls ``loop_misc`` when
the keepalive needs it: at idle that is one wake-up per keepalive period, to send the ping.
Every paho callback therefore runs on the loop thread. paho's own reconnect is off; the owner
(``MqttClient``) reconnects with its backoff on a new ``Connection``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from services.integrations.mqtt_settings import disconnect_text

if TYPE_CHECKING:
    from services.integrations.mqtt_settings import MqttSettings

logger = logging.getLogger(__name__)

READ_BATCH = 256  # packets read per readable event before yielding to the loop
MISC_SLACK = 0.01  # asyncio may run a timer up to its clock resolution early


class Connection:
    def __init__(
        self,
        client: paho.Client,
        loop: asyncio.AbstractEventLoop,
        on_message: Callable[[paho.MQTTMessage], None],
        settings: MqttSettings,
        on_subscribed: Callable[[list[str]], None] = lambda filters: None,
    ) -> None:
        self.paho = client
        self._loop = loop
        self._settings = settings
        self._v5 = client.protocol == paho.MQTTv5
        self._connack: asyncio.Future[ReasonCode] = loop.create_future()
        self._lost: asyncio.Future[str] = loop.create_future()
        self.lost_reason: str | None = None
        self._sock: Any = None
        self._fd: int | None = None
        self._misc: asyncio.TimerHandle | None = None
        self._last_in = self._last_out = time.monotonic()
        self._pending_subscribes: dict[int, list[str]] = {}
        self._on_subscribed = on_subscribed
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = lambda _c, _u, message: on_message(message)
        client.on_subscribe = self._on_subscribe

    # --- opening and closing -----------------------------------------------------------

    async def open(self, host: str, port: int) -> None:
        """Connect (in a thread: paho's connect blocks), then hand the socket to the loop."""
        future = self._loop.run_in_executor(None, self._connect_blocking, host, port)
        try:
            await asyncio.shield(future)
        except asyncio.CancelledError:
            # The thread cannot be stopped; close what it opens once it is done.
            future.add_done_callback(lambda _: self._close_socket())
            raise
        self._attach()

    def _connect_blocking(self, host: str, port: int) -> None:
        client, settings = self.paho, self._settings
        client.connect_timeout = settings.connect_timeout
        if settings.tls:
            context = ssl.create_default_context(cafile=settings.tls_ca_file or None)
            if settings.tls_insecure:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            client.tls_set_context(context)
            client.tls_insecure_set(settings.tls_insecure)
        if self._v5:
            client.connect(
                host, port, settings.keepalive, clean_start=True,
                properties=connect_properties(settings),
            )  # fmt: skip
        else:
            client.connect(host, port, settings.keepalive)

    def _attach(self) -> None:
        sock = self.paho.socket()
        if sock is None:
            raise OSError("paho connected without a socket")
        self._sock, self._fd = sock, sock.fileno()
        self.paho.on_socket_close = lambda _c, _u, _s: self._detach()
        self.paho.on_socket_register_write = lambda _c, _u, _s: self._want_write(True)
        self.paho.on_socket_unregister_write = lambda _c, _u, _s: self._want_write(False)
        self._loop.add_reader(self._fd, self._on_readable)
        if self.paho.want_write():  # the CONNECT packet did not fit in one send
            self._want_write(True)
        if self._settings.keepalive > 0:
            self._misc = self._loop.call_later(self._settings.keepalive, self._on_misc)

    def _detach(self) -> None:
        """paho is about to close the socket: stop watching its fd first (it may be reused)."""
        if self._fd is not None:
            self._loop.remove_reader(self._fd)
            self._loop.remove_writer(self._fd)
            self._fd = None
        if self._misc is not None:
            self._misc.cancel()
            self._misc = None

    def disconnect(self) -> None:
        """Send DISCONNECT (best effort, never blocks) and close."""
        if self._fd is None:
            return
        with contextlib.suppress(Exception):
            self.paho.disconnect()
            self.paho.loop_write()  # a tiny packet: fits in the socket buffer

    def close(self) -> None:
        self._detach()
        self._close_socket()

    def _close_socket(self) -> None:
        sock = self.paho.socket()
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()

    # --- waiting -------------------------------------------------------------------------

    async def wait_connack(self, stopping: asyncio.Event, within: float) -> ReasonCode | None:
        """The CONNACK's reason code; None if the connection ended or timed out first."""
        await _first(stopping, self._connack, self._lost, within=within)
        return self._connack.result() if self._connack.done() else None

    async def wait_lost(self, stopping: asyncio.Event) -> str:
        await _first(stopping, self._lost)
        return self._lost.result() if self._lost.done() else "stopped"

    # --- subscriptions -------------------------------------------------------------------

    def subscribe(self, filters: list[str]) -> None:
        option = subscribe_options(self.paho.protocol)
        result, mid = self.paho.subscribe([(f, option) for f in filters])
        if result == MQTTErrorCode.MQTT_ERR_SUCCESS and mid is not None:
            self._pending_subscribes[mid] = filters

    def unsubscribe(self, topic_filter: str) -> None:
        self.paho.unsubscribe(topic_filter)

    # --- paho callbacks (on the loop thread) ---------------------------------------------

    def _on_connect(self, _c: Any, _u: Any, _flags: Any, reason: ReasonCode, _p: Any) -> None:
        if not self._connack.done():
            self._connack.set_result(reason)

    def _on_disconnect(self, _c: Any, _u: Any, flags: Any, reason: ReasonCode, _p: Any) -> None:
        text = disconnect_text(flags.is_disconnect_packet_from_server, str(reason))
        self.lost_reason = self.lost_reason or text
        if not self._lost.done():
            self._lost.set_result(text)

    def _on_subscribe(self, _c: Any, _u: Any, mid: int, reasons: list[Any], _p: Any) -> None:
        filters = self._pending_subscribes.pop(mid, [])
        granted = []
        for topic_filter, reason in zip(filters, reasons, strict=False):
            if not (isinstance(reason, ReasonCode) and reason.is_failure):
                granted.append(topic_filter)
            else:
                logger.warning(
                    "the broker refused a subscription",
                    extra={
                        "event": "mqtt.subscribe_refused",
                        "filter": topic_filter,
                        "reason": str(reason),
                    },
                )
        self._on_subscribed(granted)

    # --- the socket ----------------------------------------------------------------------

    def _on_readable(self) -> None:
        self._last_in = time.monotonic()
        for _ in range(READ_BATCH):
            result = self.paho.loop_read()
            if result != MQTTErrorCode.MQTT_ERR_SUCCESS or self._fd is None:
                self._note_failure(result)
                return
            if not self._more_buffered():
                return

    def _more_buffered(self) -> bool:
        """Whether another packet's bytes may be waiting (one ``loop_read`` reads one packet)."""
        sock = self._sock
        if isinstance(sock, ssl.SSLSocket):
            return sock.pending() > 0
        try:
            return bool(sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            return True  # let loop_read meet the error and report it

    def _want_write(self, wanted: bool) -> None:
        if self._fd is None:
            return
        if wanted:
            self._loop.add_writer(self._fd, self._on_writable)
        else:
            self._loop.remove_writer(self._fd)

    def _on_writable(self) -> None:
        result = self.paho.loop_write()
        self._last_out = time.monotonic()
        if result != MQTTErrorCode.MQTT_ERR_SUCCESS:
            self._note_failure(result)

    def _on_misc(self) -> None:
        """Keepalive: ping once the link has been quiet for a keepalive period (paho's rule)."""
        self._misc = None
        keepalive = self.paho.keepalive  # the broker may have set it in CONNACK
        due = min(self._last_in, self._last_out) + keepalive
        now = time.monotonic()
        if now < due:
            self._misc = self._loop.call_later(due - now + MISC_SLACK, self._on_misc)
            return
        self.paho.loop_misc()
        if self._fd is not None and keepalive > 0:
            self._misc = self._loop.call_later(keepalive + MISC_SLACK, self._on_misc)

    def _note_failure(self, result: MQTTErrorCode) -> None:
        if self.lost_reason is None and result != MQTTErrorCode.MQTT_ERR_SUCCESS:
            self.lost_reason = paho.error_string(result)
        if self._fd is None and not self._lost.done():
            self._lost.set_result(self.lost_reason or "connection lost")


def connect_properties(settings: MqttSettings) -> Properties:
    """MQTT 5 CONNECT properties: no session kept, and a bound on what the broker may send."""
    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = 0
    # Bounds memory: paho buffers whole packets. Larger ones the broker drops for us.
    properties.MaximumPacketSize = min(max(settings.max_payload * 4, 1 << 20), (1 << 28) - 1)
    return properties


def subscribe_options(protocol: int) -> Any:
    return SubscribeOptions(qos=1) if protocol == paho.MQTTv5 else 1


async def _first(
    stopping: asyncio.Event, *futures: asyncio.Future[Any], within: float | None = None
) -> None:
    stop = asyncio.ensure_future(stopping.wait())
    try:
        await asyncio.wait({stop, *futures}, timeout=within, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.cancel()
