"""The asyncio side the Home Assistant and Z-Wave JS clients share.

One ``WebSocketClient.run(stopping)`` holds one connection at a time:

* connect (TCP, TLS, WebSocket upgrade) and the protocol's handshake within
  ``connect_timeout``; from then on a heartbeat notices a silent (half-open) connection:
  after ``heartbeat_interval`` seconds without activity it pings and waits ``pong_timeout``
  for the answer, so silence is noticed within heartbeat + timeout. Activity is any frame
  read and any state delivered (a long resync delays the reading of a pong, it does not
  kill the connection), so a busy connection is never pinged, and a quiet one is woken
  once per interval, nothing more;
* every wait (connect, handshake, heartbeat, pong, backoff) is on the injected clock;
* a lost connection is reported ``disconnected`` (with the reason) and retried after
  ``reconnect_delay`` (1 s doubling to ``backoff_cap``, half of it jitter; reset by a
  connection that got live); an ``AuthFailed`` is reported ``auth_failed`` and retried only
  after ``auth_retry_interval`` (None: not until the client is restarted, which is what a
  configuration change does);
* a bad frame is counted and logged at a bounded rate, never fatal; a frame over
  ``max_frame_bytes`` or invalid at the WebSocket level ends the connection (the stream
  cannot be resynchronised) and is counted too;
* ``on_state`` is awaited in arrival order (a door's open-then-closed must both arrive);
  its failures are counted and logged at a bounded rate, the entity is offered again at
  the next resync.

Subclasses (``WebSocketClient[TheirSettings]``) set up their own state in ``_init_client``
and say what the URL is, how to start a connection's protocol state, how to handle a text
frame and how to ping; they call ``_mark_ready`` (handshake done), ``_mark_live``
(in sync; reported ``connected``) and ``_deliver``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from asyncio import FIRST_COMPLETED
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any, ClassVar, Protocol

import aiohttp
from aiohttp import WSCloseCode, WSMsgType

from services.clock import Clock
from services.integrations.ws_support import (
    DeliveredStates,
    EntityState,
    Malformed,
    OnState,
    Report,
    ServerRefused,
    StatusReporter,
    reconnect_delay,
)
from services.integrations.ws_waits import (
    ConnectionLost,
    describe,
    race_clock,
    session_until_stopped,
    wait_or_stop,
)
from services.ratelimit_log import FieldNames, RateLimitedLog

logger = logging.getLogger(__name__)

# Seconds of slack when the heartbeat re-checks: a timer that wakes a hair early pings anyway.
_SLACK = 0.05
# The names the clients' counted lines have always carried (log searches use them).
_COUNTED = FieldNames(
    kind="reason", detail="detail", suppressed="not_logged_since_last", total="total"
)


class HeartbeatTimeout(ConnectionLost):
    pass


class AuthFailed(Exception):
    """The server refused our credentials: retrying soon would only be refused again."""


RECOVERABLE = (ConnectionLost, ServerRefused, aiohttp.ClientError, OSError, TimeoutError)


class ClientSettings(Protocol):
    @property
    def websocket_url(self) -> str: ...
    @property
    def heartbeat_interval(self) -> float: ...
    @property
    def pong_timeout(self) -> float: ...
    @property
    def connect_timeout(self) -> float: ...
    @property
    def close_timeout(self) -> float: ...
    @property
    def backoff_base(self) -> float: ...
    @property
    def backoff_cap(self) -> float: ...
    @property
    def max_frame_bytes(self) -> int: ...
    @property
    def verify_tls(self) -> bool: ...


class WebSocketClient[S: ClientSettings]:
    integration: ClassVar[str]  # the status hub's name, on_state's source, the log prefix
    autoping: ClassVar[bool] = True  # False: PING/PONG frames reach _read (Z-Wave's heartbeat)

    def __init__(
        self,
        settings: S,
        *,
        clock: Clock,
        report: Report,
        on_state: OnState,
        rng: Callable[[], float] = random.random,
        http: aiohttp.ClientSession | None = None,
    ) -> None:
        self.settings = settings
        self.name = self.integration
        self._clock = clock
        self._status = StatusReporter(self.integration, report)
        self._on_state = on_state
        self._rng = rng
        self._http = http
        self.malformed = self._counted_log("malformed", "malformed message ignored")
        self.state_failures = self._counted_log(
            "on_state_failed", "entity state could not be stored"
        )
        self.delivered = DeliveredStates()
        self._handshake_timer: asyncio.Future[None] | None = None
        self._heartbeat_task: asyncio.Future[None] | None = None
        self._went_live = False
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._pong: asyncio.Future[None] | None = None
        self._last_activity = 0.0
        self._state = "stopped"
        self._since: datetime | None = None
        self._last_error: str | None = None
        self._retry_in: float | None = None
        self.counters = dict.fromkeys(
            ("connects", "sessions", "frames", "states_delivered", "pings", "pong_timeouts"), 0
        )
        self._init_client()

    # --- hooks --------------------------------------------------------------------------

    def _init_client(self) -> None:
        """Set up the subclass's own state, once, at the end of ``__init__`` (so that no
        subclass restates the constructor's signature just to add to it)."""

    def _begin_connection(self) -> None:
        """Reset the per-connection protocol state."""
        raise NotImplementedError

    async def _on_text(self, text: str) -> None:
        raise NotImplementedError

    async def _send_ping(self) -> None:
        raise NotImplementedError

    def _health_details(self) -> dict[str, Any]:
        return {}

    # --- the component ------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        return {
            "state": self._state,
            "since": self._since.isoformat() if self._since else None,
            "last_error": self._last_error,
            "retry_in": self._retry_in,
            **self.counters,
            "reconnects": max(self.counters["sessions"] - 1, 0),
            "entities": len(self.delivered),
            "malformed": self.malformed.as_dict(),
            "on_state_errors": self.state_failures.total,
            **self._health_details(),
        }

    async def run(self, stopping: asyncio.Event) -> None:
        self._status("connecting")
        failures = 0
        try:
            async with self._http_session() as http:
                while not stopping.is_set():
                    self._state, self._went_live = "connecting", False
                    error = await session_until_stopped(lambda: self._session(http), stopping)
                    if error is None:
                        break
                    if isinstance(error, AuthFailed):
                        delay = self._auth_failed(error)
                    elif isinstance(error, RECOVERABLE):
                        failures = 1 if self._went_live else failures + 1
                        delay = self._lost(error, failures)
                    else:
                        raise error  # a bug: the runner logs it and restarts the component
                    await wait_or_stop(self._clock, delay, stopping)
        finally:
            self._state, self._since, self._retry_in = "stopped", None, None
            if self._status.event == "connected":
                self._status("disconnected", error="stopped")
            logger.info("client stopped", extra={"event": f"{self.integration}.stopped"})

    @contextlib.asynccontextmanager
    async def _http_session(self) -> AsyncIterator[aiohttp.ClientSession]:
        if self._http is not None:
            yield self._http
            return
        async with aiohttp.ClientSession() as http:
            yield http

    def _lost(self, error: BaseException, failures: int) -> float:
        text = self._last_error = describe(error)
        self._status("disconnected", error=text)
        delay = reconnect_delay(
            failures, base=self.settings.backoff_base, cap=self.settings.backoff_cap,
            fraction=self._rng(),
        )  # fmt: skip
        self._state, self._since, self._retry_in = "backoff", self._clock.now(), round(delay, 3)
        was_live = self._went_live
        logger.warning(
            "connection lost" if was_live else "connection failed",
            extra={
                "event": f"{self.integration}.{'disconnected' if was_live else 'connect_failed'}",
                "error": text,
                "retry_in": self._retry_in,
            },
        )
        return delay

    def _auth_failed(self, error: AuthFailed) -> float | None:
        text = self._last_error = str(error)
        self._status("auth_failed", error=text)
        delay: float | None = getattr(self.settings, "auth_retry_interval", None)
        self._state, self._since, self._retry_in = "auth_failed", self._clock.now(), delay
        logger.error(
            "authentication refused; not retrying until reconfigured"
            if delay is None
            else "authentication refused",
            extra={"event": f"{self.integration}.auth_failed", "error": text, "retry_in": delay},
        )
        return delay

    # --- one connection -----------------------------------------------------------------

    async def _session(self, http: aiohttp.ClientSession) -> None:
        settings, clock = self.settings, self._clock
        self.counters["connects"] += 1
        deadline = clock.monotonic() + settings.connect_timeout  # connect + handshake together
        ws = self._ws = await race_clock(clock, settings.connect_timeout, self._connect(http))
        self._last_activity = clock.monotonic()
        self._begin_connection()
        # _mark_ready swaps the handshake's timer for the heartbeat synchronously: no stale
        # timer outlives the handshake (and tests can count the clock's sleepers).
        self._handshake_timer = asyncio.ensure_future(clock.sleep(deadline - clock.monotonic()))
        self._heartbeat_task = None
        reader = asyncio.ensure_future(self._read(ws))
        try:
            await asyncio.wait({reader, self._handshake_timer}, return_when=FIRST_COMPLETED)
            if reader.done():
                raise reader.exception() or ConnectionLost("closed during the handshake")
            if self._heartbeat_task is None:
                raise ConnectionLost(f"no handshake within {settings.connect_timeout:g} s")
            await asyncio.wait({reader, self._heartbeat_task}, return_when=FIRST_COMPLETED)
            ended = reader if reader.done() else self._heartbeat_task
            raise ended.exception() or ConnectionLost("the connection ended")
        finally:
            for task in (reader, self._heartbeat_task, self._handshake_timer):
                if task is not None and not task.done():
                    task.cancel()
                    await asyncio.wait({task})
            self._ws = None
            await ws.close()  # bounded by close_timeout (ClientWSTimeout.ws_close)

    async def _connect(self, http: aiohttp.ClientSession) -> aiohttp.ClientWebSocketResponse:
        settings = self.settings
        return await http.ws_connect(
            settings.websocket_url,
            autoping=self.autoping,
            heartbeat=None,  # ours runs on the injected clock; see the module docstring
            max_msg_size=settings.max_frame_bytes,
            timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=settings.close_timeout),
            ssl=settings.verify_tls,
        )

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        while True:
            message = await ws.receive()
            self._last_activity = self._clock.monotonic()
            self.counters["frames"] += 1
            kind = message.type
            if kind is WSMsgType.TEXT:
                await self._handle_text(message.data)
            elif kind is WSMsgType.BINARY:
                self._malformed("binary", f"a binary frame of {len(message.data)} bytes")
            elif kind is WSMsgType.PING:
                await ws.pong(message.data)
            elif kind is WSMsgType.PONG:
                self._pong_received()
            elif kind is WSMsgType.ERROR:
                self._frame_error(message.data)
            else:  # CLOSE, CLOSING, CLOSED
                raise ConnectionLost(f"closed by the server (code {ws.close_code})")

    def _frame_error(self, error: object) -> None:
        code = getattr(error, "code", None)
        if code == WSCloseCode.MESSAGE_TOO_BIG:
            self._malformed("too_big", str(error))
            limit = self.settings.max_frame_bytes
            raise ConnectionLost(f"a frame was larger than max_frame_bytes ({limit})")
        self._malformed("bad_frame", str(error))
        raise ConnectionLost(f"invalid WebSocket frame: {error}")

    async def _handle_text(self, text: str) -> None:
        try:
            await self._on_text(text)
        except Malformed as exc:
            self._malformed(exc.reason, exc.detail)
        except (*RECOVERABLE, AuthFailed):
            raise
        except Exception as exc:  # a shape nobody foresaw must not end the connection
            self._malformed("handler_error", describe(exc), exc_info=exc)

    async def _heartbeat(self) -> None:
        interval, timeout = self.settings.heartbeat_interval, self.settings.pong_timeout
        while True:
            remaining = interval - (self._clock.monotonic() - self._last_activity)
            if remaining > _SLACK:
                await self._clock.sleep(remaining)
                continue
            self._pong = pong = asyncio.get_running_loop().create_future()
            self.counters["pings"] += 1
            await self._send_ping()
            try:
                await self._await_pong(pong, interval + timeout)
            finally:
                self._pong = None

    async def _await_pong(self, pong: asyncio.Future[None], silence: float) -> None:
        """Wait for ``pong`` while there was activity within ``silence`` seconds.

        A pong queued behind a long resync is read late: our own progress (``_deliver``)
        counts as activity, so only a connection that is silent, or a client that is stuck,
        for heartbeat + timeout is given up.
        """
        while not pong.done():
            left = self._last_activity + silence - self._clock.monotonic()
            if left <= 0:
                self.counters["pong_timeouts"] += 1
                timeout = self.settings.pong_timeout
                raise HeartbeatTimeout(f"no pong within {timeout:g} s")
            with contextlib.suppress(TimeoutError):
                await race_clock(self._clock, left, asyncio.shield(pong))

    # --- for subclasses -----------------------------------------------------------------

    async def _send(self, text: str) -> None:
        if self._ws is None:
            raise ConnectionLost("not connected")
        try:
            await self._ws.send_str(text)
        except (aiohttp.ClientError, OSError, RuntimeError) as exc:
            raise ConnectionLost(f"send failed: {describe(exc)}") from exc

    def _pong_received(self) -> None:
        if self._pong is not None and not self._pong.done():
            self._pong.set_result(None)

    def _mark_ready(self) -> None:
        """The handshake is done: from now on the heartbeat watches the connection."""
        if self._heartbeat_task is None:
            if self._handshake_timer is not None:
                self._handshake_timer.cancel()
            self._heartbeat_task = asyncio.ensure_future(self._heartbeat())

    def _mark_live(self, details: dict[str, Any]) -> None:
        self._went_live = True
        self.counters["sessions"] += 1
        self._state, self._since, self._retry_in = "connected", self._clock.now(), None
        self._status("connected", details=details)
        logger.info("connected", extra={"event": f"{self.integration}.connected", **details})

    def _counted_log(self, what: str, message: str) -> RateLimitedLog:
        # One window per log, not per reason: a fuzzer's mix of reasons is still one line a
        # minute; the per-reason counts are in ``health()``.
        return RateLimitedLog(
            logger, f"{self.integration}.{what}", message,
            monotonic=self._clock.monotonic, per_kind=False, names=_COUNTED,
        )  # fmt: skip

    def _malformed(self, reason: str, detail: str, exc_info: BaseException | None = None) -> None:
        self.malformed.record(reason, detail, exc_info=exc_info)

    async def _deliver(self, entity: EntityState) -> None:
        if not self.delivered.is_new(entity):
            return
        at = entity.last_changed
        if at is not None:
            at = min(at, self._clock.now())  # a source clock ahead of ours is not the future
        try:
            await self._on_state(
                entity.entity_id, entity.state, entity.attributes,
                source=self.integration, name=entity.name, at=at,
            )  # fmt: skip
        except Exception as exc:
            self._last_activity = self._clock.monotonic()
            self.delivered.forget(entity.entity_id)
            self.state_failures.record(
                type(exc).__name__, f"{entity.entity_id}: {describe(exc)}", exc_info=exc
            )
            return
        self.delivered.remember(entity)
        self.counters["states_delivered"] += 1
        self._last_activity = self._clock.monotonic()  # progress: see _await_pong
