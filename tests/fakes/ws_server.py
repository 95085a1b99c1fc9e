"""The machinery the fake WebSocket servers (Home Assistant, zwave-js-server) share: an aiohttp
app on 127.0.0.1 that can stop and start again on the same port, the connections it holds,
the controls a test turns (``silent``, ``refuse``, ``drop_connections``) and ``wait_for``,
which wakes on every change instead of polling.

A subclass is one protocol: its per-connection state (a ``Connection`` subclass), its
WebSocket path, what it says first (``_greet``), how it answers a JSON message
(``_on_message``) and which connections hear its pushes (``_hears_pushes``).

    async with FakeZwaveJs() as zw:           # started here, stopped at the end
        ...
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar, Self

from aiohttp import WSMsgType, web

from tests.fakes.waitable import Waitable

HOST = "127.0.0.1"
_CLOSED = (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED)


@dataclass(eq=False)
class Connection:
    ws: web.WebSocketResponse


class FakeWsServer[C: Connection](Waitable):
    scheme: ClassVar[str] = "ws"  # of ``url``: what the matching client is configured with
    websocket_path: ClassVar[str] = "/"
    # False: WebSocket PINGs reach _serve, which answers them while not silent (aiohttp's
    # autoping would answer a half-open connection's PINGs too).
    autoping: ClassVar[bool] = True
    bad_json_close: ClassVar[tuple[int, bytes]] = (1000, b"")  # code, reason: on a non-JSON frame
    shown: ClassVar[tuple[str, ...]] = ()  # the protocol's counters, in repr (a wait's timeout)

    def __init__(self, connection: type[C]) -> None:
        super().__init__()
        self._connection = connection
        self.url = ""
        self.port = 0
        self.connections: list[C] = []
        self.received: list[Any] = []  # every message _on_message took, in order
        self.attempts = 0  # WebSocket requests, refused ones included
        self.pings = 0
        self.refuse = False  # the upgrade is answered 503
        self._speaking = asyncio.Event()  # cleared while silent
        self._speaking.set()
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None

    # --- the protocol's part ------------------------------------------------------------

    def _add_routes(self, app: web.Application) -> None:
        """The WebSocket; a subclass adds the rest of its API."""
        app.router.add_get(self.websocket_path, self._websocket)

    async def _greet(self, conn: C) -> None:
        """What the server sends first, once it speaks."""

    async def _on_message(self, conn: C, data: Any) -> bool:
        """Answer one JSON message; False ends the connection."""
        raise NotImplementedError

    def _hears_pushes(self, conn: C) -> bool:
        """Whether ``conn`` is past the handshake, so that events and ``send_raw`` reach it."""
        raise NotImplementedError

    # --- controls -----------------------------------------------------------------------

    @property
    def silent(self) -> bool:
        """Half-open: the connections stay, nothing is read, nothing is sent."""
        return not self._speaking.is_set()

    @silent.setter
    def silent(self, value: bool) -> None:
        if value:
            self._speaking.clear()
        else:
            self._speaking.set()

    async def send_raw(self, frame: str | bytes) -> int:
        """Send ``frame`` as is (text or binary) to every connection that hears pushes, none
        while silent; returns how many it reached."""
        if self.silent:
            return 0
        sent = 0
        for conn in self._push_targets():
            if await self._send(conn, frame):
                sent += 1
        return sent

    async def drop_connections(self) -> None:
        for conn in list(self.connections):
            await conn.ws.close(code=1001, message=b"going away")

    def __repr__(self) -> str:
        counters = {"attempts": self.attempts, "connections": len(self.connections)}
        counters |= {name: getattr(self, name) for name in self.shown}
        return f"{type(self).__name__}({', '.join(f'{k}={v}' for k, v in counters.items())})"

    # --- the server ---------------------------------------------------------------------

    async def start(self) -> None:
        """Listen (again) on the same port as before, or on a free one the first time."""
        app = web.Application()
        self._add_routes(app)
        self._closing.clear()
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False,
                                     shutdown_timeout=1.0)  # fmt: skip
        await self._runner.setup()
        await web.TCPSite(self._runner, HOST, self.port, reuse_address=True).start()
        self.port = self._runner.addresses[0][1]
        self.url = f"{self.scheme}://{HOST}:{self.port}"

    async def stop(self) -> None:
        """Close every connection and stop listening: connects are refused until start()."""
        self._closing.set()
        if self._runner is not None:
            await self.drop_connections()
            await self._runner.cleanup()
            self._runner = None
        self._notify()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    # --- for subclasses -----------------------------------------------------------------

    def _push_targets(self) -> list[C]:
        return [c for c in self.connections if self._hears_pushes(c) and not c.ws.closed]

    async def _send(self, conn: C, frame: str | bytes) -> bool:
        """Send one frame; False when the client was already gone (a race, not an error)."""
        with contextlib.suppress(ConnectionError, RuntimeError):
            if isinstance(frame, bytes):
                await conn.ws.send_bytes(frame)
            else:
                await conn.ws.send_str(frame)
            return True
        return False

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        self.attempts += 1
        self._notify()
        if self.refuse:
            return web.Response(status=503, text="refused by the test")
        # timeout: how long close() waits for the client's answer (a silent one never does).
        ws = web.WebSocketResponse(autoping=self.autoping, max_msg_size=16 * 2**20, timeout=0.5)
        await ws.prepare(request)
        conn = self._connection(ws)
        self.connections.append(conn)
        try:
            with contextlib.suppress(ConnectionError):  # the client went away mid-answer
                await self._serve(conn)
        finally:
            self.connections.remove(conn)
            self._notify()
        return ws

    async def _serve(self, conn: C) -> None:
        ws = conn.ws
        if not await self._unless_silent():
            return
        await self._greet(conn)
        while await self._unless_silent():
            message = await ws.receive()
            if message.type in _CLOSED:
                return
            if self.silent:
                continue  # what arrives while silent is lost, as on a half-open connection
            if message.type is WSMsgType.PING:  # only without autoping
                await ws.pong(message.data)
                self.pings += 1
                self._notify()
                continue
            if message.type is not WSMsgType.TEXT:
                continue
            try:
                data = json.loads(message.data)
            except ValueError:
                code, reason = self.bad_json_close
                await ws.close(code=code, message=reason)
                return
            if not await self._on_message(conn, data):
                return
            self._notify()

    async def _unless_silent(self) -> bool:
        """Wait while silent; False once the server is closing."""
        if self.silent:
            waiters = {asyncio.ensure_future(e.wait()) for e in (self._speaking, self._closing)}
            try:
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()
        return not self._closing.is_set()
