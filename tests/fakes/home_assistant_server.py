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
        await ha.send_raw("{not json")             # to every authenticated client, unless silent
        await ha.drop_connections()                # the server closes every WebSocket
        ha.silent = True                           # half-open: reads nothing, answers nothing
        ha.refuse = True                           # the upgrade is answered 503
        await ha.stop(); await ha.start()          # the port stops listening, then again
        await ha.wait_for(lambda: ha.auth_ok >= 2) # woken on every change, with a timeout
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

from aiohttp import web

from tests.fakes.ws_server import Connection, FakeWsServer

VERSION = "2025.6.1"


@dataclass(eq=False)
class FakeConnection(Connection):
    authenticated: bool = False
    last_id: int = 0
    subscriptions: dict[int, str] = field(default_factory=dict)  # id -> event_type


class FakeHomeAssistant(FakeWsServer[FakeConnection]):
    scheme = "http"  # the client is given Home Assistant's base URL, not the WebSocket's
    websocket_path = "/api/websocket"
    shown = ("auth_ok",)
    bad_json_close: ClassVar[tuple[int, bytes]] = (1003, b"bad json")

    def __init__(self, *, token: str = "fake-ha-token", version: str = VERSION) -> None:
        super().__init__(FakeConnection)
        self.token = token
        self.version = version
        self.states: dict[str, dict[str, Any]] = {}
        self.auth_ok = 0
        self.auth_invalid = 0
        self.rest_requests: list[tuple[str, str]] = []  # (path, Authorization header)
        self.rest_status: int | None = None  # answer every REST request with this status
        self.states_body: Any = None  # GET /api/states answers this instead of the states
        self._context_ids = itertools.count(1)

    # --- the state machine --------------------------------------------------------------

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

    def subscribers(self) -> int:
        return sum(1 for c in self._push_targets() if "state_changed" in c.subscriptions.values())

    # --- the protocol -------------------------------------------------------------------

    def _add_routes(self, app: web.Application) -> None:
        super()._add_routes(app)
        app.router.add_get("/api/", self._api_root)
        app.router.add_get("/api/states", self._api_states)

    def _hears_pushes(self, conn: FakeConnection) -> bool:
        return conn.authenticated

    async def _greet(self, conn: FakeConnection) -> None:
        await conn.ws.send_json({"type": "auth_required", "ha_version": self.version})

    async def _on_message(self, conn: FakeConnection, data: Any) -> bool:
        if not isinstance(data, dict):
            return True
        if not conn.authenticated:
            return await self._authenticate(conn, data)
        self.received.append(data)
        await self._command(conn, data)
        return True

    async def _publish(
        self, entity_id: str, old: dict[str, Any] | None, new: dict[str, Any] | None
    ) -> int:
        if self.silent:
            return 0
        fired = datetime.now(UTC).isoformat()
        sent = 0
        for conn in self._push_targets():
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
                frame = json.dumps({"id": sub_id, "type": "event", "event": event})
                if await self._send(conn, frame):
                    sent += 1
        return sent

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


def running_fake_home_assistant(**kwargs: Any) -> FakeHomeAssistant:
    """``async with running_fake_home_assistant() as ha``: started for the block."""
    return FakeHomeAssistant(**kwargs)
