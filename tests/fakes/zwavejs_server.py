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
        zw.set_value(7, 113, "Access Control", 23, property_key="Door state")  # no event
        await zw.send_raw("{not json")          # any frame, to every listening client
        await zw.drop_connections(); zw.silent = True; zw.refuse = True
        await zw.stop(); await zw.start()
        await zw.wait_for(lambda: zw.listening >= 2)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tests.fakes.ws_server import Connection, FakeWsServer

CC_NAMES = {37: "Binary Switch", 48: "Binary Sensor", 49: "Multilevel Sensor",
            98: "Door Lock", 113: "Notification", 128: "Battery", 112: "Configuration"}  # fmt: skip


@dataclass(eq=False)
class FakeClient(Connection):
    schema: int = 0
    listening: bool = False


class FakeZwaveJs(FakeWsServer[FakeClient]):
    autoping = False  # its PINGs are answered by hand, so that ``silent`` stops the answers
    shown = ("listening",)

    def __init__(self, *, home_id: int = 3967322157, min_schema: int = 0, max_schema: int = 40):
        super().__init__(FakeClient)
        self.driver_version = "14.3.2"
        self.server_version = "1.40.1"
        self.home_id = home_id
        self.min_schema = min_schema
        self.max_schema = max_schema
        self.nodes: dict[int, dict[str, Any]] = {}
        self.listening = 0  # start_listening commands answered
        self.fail_start_listening = False

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

    def set_value(
        self, node_id: int, command_class: int, prop: str | int, new_value: Any, *,
        property_key: str | int | None = None, endpoint: int = 0,
    ) -> tuple[dict[str, Any], Any]:  # fmt: skip
        """Change a stored value without telling anyone; (the entry, its previous value)."""
        wanted = (command_class, prop, property_key, endpoint)
        for entry in self.nodes[node_id]["values"]:
            key = (entry["commandClass"], entry["property"], entry.get("propertyKey"))
            if (*key, entry["endpoint"]) == wanted:
                previous, entry["value"] = entry["value"], new_value
                return entry, previous
        raise KeyError("no such value; add_value first")

    async def update_value(
        self, node_id: int, command_class: int, prop: str | int, new_value: Any, *,
        property_key: str | int | None = None, endpoint: int = 0,
    ) -> int:  # fmt: skip
        """Change a stored value and send ``value updated`` to every listening client."""
        entry, previous = self.set_value(
            node_id, command_class, prop, new_value, property_key=property_key, endpoint=endpoint
        )
        args = {k: v for k, v in entry.items() if k not in ("metadata", "value", "ccVersion")}
        args |= {"newValue": new_value, "prevValue": previous}
        event = {"source": "node", "event": "value updated", "nodeId": node_id, "args": args}
        return await self.push_event(event)

    async def push_event(self, event: dict[str, Any]) -> int:
        return await self.send_raw(json.dumps({"type": "event", "event": event}))

    # --- the protocol -------------------------------------------------------------------

    def _hears_pushes(self, conn: FakeClient) -> bool:
        return conn.listening

    async def _greet(self, conn: FakeClient) -> None:
        await conn.ws.send_json(
            {"type": "version", "driverVersion": self.driver_version,
             "serverVersion": self.server_version, "homeId": self.home_id,
             "minSchemaVersion": self.min_schema, "maxSchemaVersion": self.max_schema}
        )  # fmt: skip

    async def _on_message(self, conn: FakeClient, data: Any) -> bool:
        self.received.append(data)
        await self._command(conn, data)
        return True

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
            self._notify()
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


def running_fake_zwavejs(**kwargs: Any) -> FakeZwaveJs:
    """``async with running_fake_zwavejs() as zw``: started for the block."""
    return FakeZwaveJs(**kwargs)
