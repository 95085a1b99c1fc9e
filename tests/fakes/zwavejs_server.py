"""A local aiohttp server that speaks zwave-js-server's WebSocket protocol, for tests and
benchmarks, written from its README (github.com/zwave-js/zwave-js-server), not from the client.

On connect it sends ``version``; it answers ``set_api_schema`` / ``initialize`` (refusing a
schema outside its range with ``errorCode: "schema_incompatible"``), ``start_listening``
(the state: driver, controller, nodes with values; then events flow) and anything else with
``errorCode: "unknown_command"``. Like the real server it closes the socket on a frame that
is not JSON, and it answers WebSocket PINGs (by hand, so that ``silent`` can stop it).

    async with running_fake_zwavejs() as zw:
        zw.add_value(7, 113, "Access Control", 23, property_key="Door state")
        ...                                     # connect a client to zw.url
        await zw.update_value(7, 113, "Access Control", 22, property_key="Door state")
        await zw.send_raw("{not json")          # any frame, to every listening client
        await zw.drop_connections(); zw.silent = True; zw.refuse = True
        await zw.stop(); await zw.start()
        await zw.wait_for(lambda: zw.listening >= 2)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import WSMsgType, web

HOST = "127.0.0.1"
CC_NAMES = {37: "Binary Switch", 48: "Binary Sensor", 49: "Multilevel Sensor",
            98: "Door Lock", 113: "Notification", 128: "Battery", 112: "Configuration"}  # fmt: skip


@dataclass(eq=False)
class FakeClient:
    ws: web.WebSocketResponse
    schema: int = 0
    listening: bool = False


class FakeZwaveJs:
    def __init__(self, *, home_id: int = 3967322157, min_schema: int = 0, max_schema: int = 40):
        self.driver_version = "14.3.2"
        self.server_version = "1.40.1"
        self.home_id = home_id
        self.min_schema = min_schema
        self.max_schema = max_schema
        self.url = ""
        self.port = 0
        self.nodes: dict[int, dict[str, Any]] = {}
        self.clients: list[FakeClient] = []
        self.received: list[dict[str, Any]] = []
        self.attempts = 0
        self.listening = 0  # start_listening commands answered
        self.pings = 0
        self.refuse = False
        self.fail_start_listening = False
        self._speaking = asyncio.Event()
        self._speaking.set()
        self._closing = asyncio.Event()
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None

    # --- the network ----------------------------------------------------------------------

    def add_node(self, node_id: int, name: str = "", **extra: Any) -> dict[str, Any]:
        node = self.nodes.setdefault(
            node_id, {"nodeId": node_id, "name": name, "location": "", "status": 4,
                      "ready": True, "values": [], **extra}
        )  # fmt: skip
        return node

    def add_value(
        self, node_id: int, command_class: int, prop: str | int, value: Any, *,
        property_key: str | int | None = None, endpoint: int = 0,
        metadata: dict[str, Any] | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        entry = {
            "endpoint": endpoint,
            "commandClass": command_class,
            "commandClassName": CC_NAMES.get(command_class, f"CC {command_class}"),
            "property": prop,
            "propertyName": str(prop),
            "ccVersion": 1,
            "metadata": metadata or {"type": "any", "readable": True, "writeable": False},
            "value": value,
        }
        if property_key is not None:
            entry |= {"propertyKey": property_key, "propertyKeyName": str(property_key)}
        self.add_node(node_id)["values"].append(entry)
        return entry

    async def update_value(
        self, node_id: int, command_class: int, prop: str | int, new_value: Any, *,
        property_key: str | int | None = None, endpoint: int = 0,
    ) -> int:  # fmt: skip
        """Change a stored value and send ``value updated`` to every listening client."""
        wanted = (command_class, prop, property_key, endpoint)
        for entry in self.nodes[node_id]["values"]:
            key = (entry["commandClass"], entry["property"], entry.get("propertyKey"))
            if (*key, entry["endpoint"]) == wanted:
                previous, entry["value"] = entry["value"], new_value
                break
        else:
            raise KeyError("no such value; add_value first")
        args = {k: v for k, v in entry.items() if k not in ("metadata", "value", "ccVersion")}
        args |= {"newValue": new_value, "prevValue": previous}
        event = {"source": "node", "event": "value updated", "nodeId": node_id, "args": args}
        return await self.push_event(event)

    async def push_event(self, event: dict[str, Any]) -> int:
        return await self.send_raw(json.dumps({"type": "event", "event": event}))

    async def send_raw(self, frame: str | bytes) -> int:
        """Send ``frame`` as is to every listening client (none while silent)."""
        if not self._speaking.is_set():
            return 0
        sent = 0
        for client in [c for c in self.clients if c.listening and not c.ws.closed]:
            with contextlib.suppress(ConnectionError, RuntimeError):
                if isinstance(frame, bytes):
                    await client.ws.send_bytes(frame)
                else:
                    await client.ws.send_str(frame)
                sent += 1
        return sent

    @property
    def silent(self) -> bool:
        return not self._speaking.is_set()

    @silent.setter
    def silent(self, value: bool) -> None:
        if value:
            self._speaking.clear()
        else:
            self._speaking.set()

    async def drop_connections(self) -> None:
        for client in list(self.clients):
            await client.ws.close(code=1001, message=b"going away")

    async def wait_for(self, condition: Callable[[], bool], timeout: float = 5.0) -> None:  # noqa: ASYNC109
        try:
            async with asyncio.timeout(timeout):
                while not condition():
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise TimeoutError(
                f"condition not met in {timeout} s (attempts={self.attempts}, "
                f"listening={self.listening}, clients={len(self.clients)})"
            ) from None

    # --- the server ---------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/", self._websocket)
        self._closing.clear()
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False,
                                     shutdown_timeout=1.0)  # fmt: skip
        await self._runner.setup()
        await web.TCPSite(self._runner, HOST, self.port, reuse_address=True).start()
        self.port = self._runner.addresses[0][1]
        self.url = f"ws://{HOST}:{self.port}"

    async def stop(self) -> None:
        self._closing.set()
        if self._runner is not None:
            await self.drop_connections()
            await self._runner.cleanup()
            self._runner = None
        self._changed.set()

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        self.attempts += 1
        self._changed.set()
        if self.refuse:
            return web.Response(status=503, text="refused by the test")
        ws = web.WebSocketResponse(autoping=False, max_msg_size=16 * 2**20, timeout=0.5)
        await ws.prepare(request)
        client = FakeClient(ws)
        self.clients.append(client)
        try:
            with contextlib.suppress(ConnectionError):
                await self._serve(client)
        finally:
            self.clients.remove(client)
            self._changed.set()
        return ws

    async def _unless_silent(self) -> bool:
        if self.silent:
            waiters = {asyncio.ensure_future(e.wait()) for e in (self._speaking, self._closing)}
            try:
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()
        return not self._closing.is_set()

    async def _serve(self, client: FakeClient) -> None:
        ws = client.ws
        if not await self._unless_silent():
            return
        await ws.send_json(
            {"type": "version", "driverVersion": self.driver_version,
             "serverVersion": self.server_version, "homeId": self.home_id,
             "minSchemaVersion": self.min_schema, "maxSchemaVersion": self.max_schema}
        )  # fmt: skip
        while await self._unless_silent():
            message = await ws.receive()
            if self.silent and message.type in (WSMsgType.PING, WSMsgType.TEXT):
                continue  # what arrives while silent is lost, as on a half-open connection
            if message.type is WSMsgType.PING:
                await ws.pong(message.data)
                self.pings += 1
                self._changed.set()
                continue
            if message.type is not WSMsgType.TEXT:
                if message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                    return
                continue
            try:
                data = json.loads(message.data)
            except ValueError:
                await ws.close()  # what zwave-js-server does: no messageId to answer
                return
            self.received.append(data)
            await self._command(client, data)
            self._changed.set()

    async def _command(self, client: FakeClient, data: dict[str, Any]) -> None:
        message_id, command = data.get("messageId"), data.get("command")
        if command in ("set_api_schema", "initialize"):
            schema = data.get("schemaVersion")
            if not isinstance(schema, int) or not self.min_schema <= schema <= self.max_schema:
                await self._error(client, message_id, "schema_incompatible")
                return
            client.schema = schema
            await self._success(client, message_id, {})
        elif command == "start_listening":
            if self.fail_start_listening:
                await self._error(client, message_id, "unknown_error")
                return
            await self._success(client, message_id, {"state": self._state()})
            client.listening = True
            self.listening += 1
            self._changed.set()
        else:
            await self._error(client, message_id, "unknown_command")

    def _state(self) -> dict[str, Any]:
        return {
            "driver": {"logConfig": {"enabled": True, "level": "info"},
                       "statisticsEnabled": False},
            "controller": {"homeId": self.home_id, "ownNodeId": 1, "isPrimary": True,
                           "sdkVersion": "7.19.3"},
            "nodes": list(self.nodes.values()),
        }  # fmt: skip

    async def _success(self, client: FakeClient, message_id: Any, result: Any) -> None:
        await client.ws.send_json(
            {"type": "result", "messageId": message_id, "success": True, "result": result}
        )

    async def _error(self, client: FakeClient, message_id: Any, code: str) -> None:
        await client.ws.send_json(
            {"type": "result", "messageId": message_id, "success": False, "errorCode": code,
             "args": {}}
        )  # fmt: skip


@contextlib.asynccontextmanager
async def running_fake_zwavejs(**kwargs: Any) -> AsyncIterator[FakeZwaveJs]:
    fake = FakeZwaveJs(**kwargs)
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()
