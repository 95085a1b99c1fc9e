"""A local aiohttp server that speaks Home Assistant's WebSocket and REST APIs, for tests and
benchmarks. Written from the documentation (developers.home-assistant.io "WebSocket API" and
"REST API"), not from the client, so the two can disagree and a test catch it.

WebSocket ``/api/websocket``: ``auth_required`` -> ``auth`` -> ``auth_ok`` or
``auth_invalid`` (then the server closes); commands with growing ids: ``subscribe_events``,
``get_states``, ``ping`` -> ``pong``; anything else gets a ``result`` with
``success: false``. REST: ``GET /api/`` and ``GET /api/states`` with ``Authorization: Bearer``
(401 without the right token).

What a test can do:

    async with running_fake_home_assistant() as ha:
        ha.set_state("binary_sensor.door", "off", {"friendly_name": "Door"})
        ...                                        # connect a client to ha.url, ha.token
        await ha.push_state("binary_sensor.door", "on")  # a state_changed to every subscriber
        await ha.send_raw("{not json")             # any frame, to every authenticated client
        await ha.drop_connections()                # the server closes every WebSocket
        ha.silent = True                           # half-open: reads nothing, answers nothing
        ha.refuse = True                           # the upgrade is answered 503
        await ha.stop(); await ha.start()          # the port stops listening, then again
        await ha.wait_for(lambda: ha.auth_ok >= 2) # woken on every change, with a timeout
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import WSMsgType, web

HOST = "127.0.0.1"
VERSION = "2025.6.1"


@dataclass(eq=False)
class FakeConnection:
    ws: web.WebSocketResponse
    authenticated: bool = False
    last_id: int = 0
    subscriptions: dict[int, str] = field(default_factory=dict)  # id -> event_type


class FakeHomeAssistant:
    def __init__(self, *, token: str = "fake-ha-token", version: str = VERSION) -> None:
        self.token = token
        self.version = version
        self.url = ""
        self.port = 0
        self.states: dict[str, dict[str, Any]] = {}
        self.connections: list[FakeConnection] = []
        self.received: list[dict[str, Any]] = []  # every command after auth, in order
        self.attempts = 0  # requests to /api/websocket, refused ones included
        self.auth_ok = 0
        self.auth_invalid = 0
        self.pings = 0
        self.rest_requests: list[tuple[str, str]] = []  # (path, Authorization header)
        self.rest_status: int | None = None  # answer every REST request with this status
        self.states_body: Any = None  # GET /api/states answers this instead of the states
        self.refuse = False
        self._speaking = asyncio.Event()  # cleared while silent
        self._speaking.set()
        self._closing = asyncio.Event()
        self._changed = asyncio.Event()
        self._context_ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None

    # --- controls -----------------------------------------------------------------------

    @property
    def silent(self) -> bool:
        return not self._speaking.is_set()

    @silent.setter
    def silent(self, value: bool) -> None:
        if value:
            self._speaking.clear()
        else:
            self._speaking.set()

    def set_state(
        self, entity_id: str, state: str, attributes: dict[str, Any] | None = None, **extra: Any
    ) -> dict[str, Any]:
        """Change the state machine without telling anyone (as if no client were subscribed)."""
        now = datetime.now(UTC).isoformat()
        old = self.states.get(entity_id)
        changed = old is None or old["state"] != state
        new = {
            "entity_id": entity_id,
            "state": state,
            "attributes": dict(attributes or {}),
            "last_changed": now if changed else old["last_changed"],  # type: ignore[index]
            "last_reported": now,
            "last_updated": now,
            "context": {"id": f"ctx{next(self._context_ids)}", "parent_id": None, "user_id": None},
            **extra,
        }
        self.states[entity_id] = new
        return new

    async def push_state(
        self, entity_id: str, state: str, attributes: dict[str, Any] | None = None, **extra: Any
    ) -> int:
        """Change a state and send state_changed to every subscriber; returns how many."""
        old = self.states.get(entity_id)
        new = self.set_state(entity_id, state, attributes, **extra)
        return await self._publish(entity_id, old, new)

    async def remove_state(self, entity_id: str) -> int:
        old = self.states.pop(entity_id, None)
        return await self._publish(entity_id, old, None)

    async def send_raw(self, frame: str | bytes) -> int:
        """Send ``frame`` as is (text or binary) to every authenticated connection."""
        sent = 0
        for conn in self._live():
            with contextlib.suppress(ConnectionError, RuntimeError):
                if isinstance(frame, bytes):
                    await conn.ws.send_bytes(frame)
                else:
                    await conn.ws.send_str(frame)
                sent += 1
        return sent

    async def drop_connections(self) -> None:
        for conn in list(self.connections):
            await conn.ws.close(code=1001, message=b"going away")

    async def wait_for(self, condition: Callable[[], bool], timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Return once ``condition()`` holds (checked after every change), else TimeoutError."""
        try:
            async with asyncio.timeout(timeout):
                while not condition():
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise TimeoutError(
                f"condition not met in {timeout} s (attempts={self.attempts}, "
                f"auth_ok={self.auth_ok}, connections={len(self.connections)})"
            ) from None

    def subscribers(self) -> int:
        return sum(1 for c in self._live() if "state_changed" in c.subscriptions.values())

    # --- the server ---------------------------------------------------------------------

    async def start(self) -> None:
        """Listen (again) on the same port as before, or on a free one the first time."""
        app = web.Application()
        app.router.add_get("/api/websocket", self._websocket)
        app.router.add_get("/api/", self._api_root)
        app.router.add_get("/api/states", self._api_states)
        self._closing.clear()
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False,
                                     shutdown_timeout=1.0)  # fmt: skip
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, HOST, self.port, reuse_address=True)
        await self._site.start()
        self.port = self._runner.addresses[0][1]
        self.url = f"http://{HOST}:{self.port}"

    async def stop(self) -> None:
        """Close every connection and stop listening: connects are refused until start()."""
        self._closing.set()
        if self._runner is not None:
            await self.drop_connections()
            await self._runner.cleanup()
            self._runner = None
        self._notify()

    def _notify(self) -> None:
        self._changed.set()

    def _live(self) -> list[FakeConnection]:
        return [c for c in self.connections if c.authenticated and not c.ws.closed]

    async def _publish(
        self, entity_id: str, old: dict[str, Any] | None, new: dict[str, Any] | None
    ) -> int:
        if self.silent:
            return 0
        fired = datetime.now(UTC).isoformat()
        sent = 0
        for conn in self._live():
            for sub_id, event_type in list(conn.subscriptions.items()):
                if event_type != "state_changed":
                    continue
                event = {
                    "event_type": "state_changed",
                    "data": {"entity_id": entity_id, "old_state": old, "new_state": new},
                    "origin": "LOCAL",
                    "time_fired": fired,
                    "context": {"id": f"ctx{next(self._context_ids)}"},
                }
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await conn.ws.send_json({"id": sub_id, "type": "event", "event": event})
                    sent += 1
        return sent

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        self.attempts += 1
        self._notify()
        if self.refuse:
            return web.Response(status=503, text="refused by the test")
        # timeout: how long close() waits for the client's answer (a silent one never does).
        ws = web.WebSocketResponse(max_msg_size=16 * 2**20, timeout=0.5)
        await ws.prepare(request)
        conn = FakeConnection(ws)
        self.connections.append(conn)
        try:
            with contextlib.suppress(ConnectionError):  # the client went away mid-answer
                await self._serve(conn)
        finally:
            self.connections.remove(conn)
            self._notify()
        return ws

    async def _serve(self, conn: FakeConnection) -> None:
        ws = conn.ws
        if not await self._unless_silent():
            return
        await ws.send_json({"type": "auth_required", "ha_version": self.version})
        while await self._unless_silent():
            message = await ws.receive()
            if message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                return
            if message.type is not WSMsgType.TEXT or self.silent:
                continue  # what arrives while silent is lost, as on a half-open connection
            try:
                data = json.loads(message.data)
            except ValueError:
                await ws.close(code=1003, message=b"bad json")
                return
            if not isinstance(data, dict):
                continue
            if not conn.authenticated:
                if not await self._authenticate(conn, data):
                    return
                continue
            self.received.append(data)
            await self._command(conn, data)
            self._notify()

    async def _unless_silent(self) -> bool:
        """Wait while silent (a half-open connection: nothing read, nothing sent).

        False once the server is closing."""
        if self.silent:
            waiters = {asyncio.ensure_future(e.wait()) for e in (self._speaking, self._closing)}
            try:
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()
        return not self._closing.is_set()

    async def _authenticate(self, conn: FakeConnection, data: dict[str, Any]) -> bool:
        if data.get("type") == "auth" and data.get("access_token") == self.token:
            conn.authenticated = True
            self.auth_ok += 1
            self._notify()
            await conn.ws.send_json({"type": "auth_ok", "ha_version": self.version})
            return True
        self.auth_invalid += 1
        self._notify()
        await conn.ws.send_json({"type": "auth_invalid", "message": "Invalid access token"})
        await conn.ws.close()
        return False

    async def _command(self, conn: FakeConnection, data: dict[str, Any]) -> None:
        message_id, kind = data.get("id"), data.get("type")
        if type(message_id) is not int or message_id <= conn.last_id:
            await self._error(conn, message_id, "id_reuse", "Identifier values have to increase.")
            return
        conn.last_id = message_id
        if kind == "ping":
            self.pings += 1
            await conn.ws.send_json({"id": message_id, "type": "pong"})
        elif kind == "subscribe_events":
            conn.subscriptions[message_id] = str(data.get("event_type", "*"))
            await self._result(conn, message_id, None)
        elif kind == "get_states":
            await self._result(conn, message_id, list(self.states.values()))
        else:
            await self._error(conn, message_id, "unknown_command", "Unknown command.")

    async def _result(self, conn: FakeConnection, message_id: int, result: Any) -> None:
        await conn.ws.send_json(
            {"id": message_id, "type": "result", "success": True, "result": result}
        )

    async def _error(self, conn: FakeConnection, message_id: Any, code: str, text: str) -> None:
        await conn.ws.send_json(
            {"id": message_id, "type": "result", "success": False,
             "error": {"code": code, "message": text}}
        )  # fmt: skip

    def _rest_refusal(self, request: web.Request) -> web.Response | None:
        header = request.headers.get("Authorization", "")
        self.rest_requests.append((request.path, header))
        self._notify()
        if self.rest_status is not None:
            return web.json_response({"message": "scripted"}, status=self.rest_status)
        if header != f"Bearer {self.token}":
            return web.Response(status=401, text="401: Unauthorized")
        return None

    async def _api_root(self, request: web.Request) -> web.Response:
        return self._rest_refusal(request) or web.json_response({"message": "API running."})

    async def _api_states(self, request: web.Request) -> web.Response:
        body = list(self.states.values()) if self.states_body is None else self.states_body
        return self._rest_refusal(request) or web.json_response(body)


@contextlib.asynccontextmanager
async def running_fake_home_assistant(**kwargs: Any) -> AsyncIterator[FakeHomeAssistant]:
    fake = FakeHomeAssistant(**kwargs)
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()
