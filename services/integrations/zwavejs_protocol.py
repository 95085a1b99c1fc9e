"""zwave-js-server's WebSocket protocol, without I/O (github.com/zwave-js/zwave-js-server).

1. On connect the server sends ``{"type": "version", "driverVersion", "serverVersion",
   "homeId", "minSchemaVersion", "maxSchemaVersion"}``.
2. We send ``{"command": "set_api_schema", "schemaVersion": n, "messageId": ...}``: without
   it the server speaks schema 0. ``n`` is ``SCHEMA_VERSION`` brought into the server's range
   (the fields read here have kept their shape across schemas).
3. We send ``{"command": "start_listening", "messageId": ...}``; the ``result`` carries
   ``state`` (``controller``, ``nodes`` with their ``values``) and events follow.
4. Results are ``{"type": "result", "messageId", "success", "result"}`` or, on failure,
   ``success: false`` with ``errorCode`` (and ``zwaveErrorMessage`` for driver errors).
5. Events are ``{"type": "event", "event": {"source", "event", ...}}``; the ones read here:
   node ``value updated`` / ``value added`` (``nodeId``, ``args`` with ``newValue``), node
   ``ready`` (``nodeState``), controller ``node added`` / ``node removed`` (``node``).

Values become entities: ``zwavejs.node_<node>[_ep<endpoint>]_<command class>_<property>
[_<property key>]``, e.g. ``zwavejs.node_7_notification_access_control_door_state`` or
``zwavejs.node_12_binary_sensor_any``. The command class part comes from its number (a table
of names, else ``cc<number>``), so an event and the state dump always agree. The state is the
value as text (booleans ``on``/``off``, no value ``unknown``); attributes carry the node,
endpoint, command class, property (key), the label and unit of the value's metadata and, for
values with named states, ``value_label``.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeGuard

from services.integrations.ws_support import EntityState, Malformed, ServerRefused

SCHEMA_VERSION = 35
# Binary Switch, Multilevel Switch, Binary Sensor, Multilevel Sensor, Door Lock, Notification,
# Battery: what an alarm panel reads. ``command_classes=None`` in the settings takes all.
DEFAULT_COMMAND_CLASSES = (37, 38, 48, 49, 98, 113, 128)
COMMAND_CLASS_NAMES = {
    32: "basic", 37: "binary_switch", 38: "multilevel_switch", 48: "binary_sensor",
    49: "multilevel_sensor", 50: "meter", 51: "color_switch", 64: "thermostat_mode",
    67: "thermostat_setpoint", 91: "central_scene", 98: "door_lock", 99: "user_code",
    102: "barrier_operator", 111: "entry_control", 113: "notification", 121: "sound_switch",
    128: "battery", 135: "indicator", 156: "alarm_sensor",
}  # fmt: skip
_ENTITY_ID_MAX = 255
_STATE_MAX = 255


@dataclass(frozen=True, slots=True)
class ServerVersion:
    driver_version: str
    server_version: str
    home_id: int | None
    min_schema: int
    max_schema: int


def parse_version(body: dict[str, Any]) -> ServerVersion:
    driver, server = body.get("driverVersion"), body.get("serverVersion")
    if not isinstance(driver, str) or not isinstance(server, str):
        raise Malformed("bad_version", "version needs string driverVersion and serverVersion")
    home_id = body.get("homeId")
    low, high = body.get("minSchemaVersion", 0), body.get("maxSchemaVersion", 0)
    if not _is_int(low) or not _is_int(high) or low > high:
        raise Malformed("bad_version", f"bad schema range {low!r}..{high!r}")
    return ServerVersion(driver[:40], server[:40], home_id if _is_int(home_id) else None, low, high)


def choose_schema(server: ServerVersion, wanted: int = SCHEMA_VERSION) -> int:
    return min(max(wanted, server.min_schema), server.max_schema)


# --- values -> entities --------------------------------------------------------------------


def _is_int(value: object) -> TypeGuard[int]:
    return type(value) is int  # not bool, which JSON keeps apart


def _slug(value: object) -> str:
    text = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", str(value))
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "x"


def value_entity_id(node_id: int, value: dict[str, Any]) -> str:
    cc = value["commandClass"]
    parts = [f"node_{node_id}"]
    if endpoint := value.get("endpoint") or 0:
        parts.append(f"ep{endpoint}")
    parts += [COMMAND_CLASS_NAMES.get(cc, f"cc{cc}"), _slug(value["property"])]
    if value.get("propertyKey") is not None:
        parts.append(_slug(value["propertyKey"]))
    entity_id = "zwavejs." + "_".join(parts)
    if len(entity_id) > _ENTITY_ID_MAX:
        digest = hashlib.sha256(entity_id.encode()).hexdigest()[:12]
        entity_id = f"{entity_id[: _ENTITY_ID_MAX - 13]}_{digest}"
    return entity_id


def value_state(raw: object) -> str:
    if raw is None:
        return "unknown"
    if isinstance(raw, bool):
        return "on" if raw else "off"
    if isinstance(raw, int | float | str):
        return str(raw)[:_STATE_MAX]
    return json.dumps(raw, sort_keys=True, default=str)[:_STATE_MAX]


def _check_value(value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Malformed("bad_value", f"a value must be an object, not {type(value).__name__}")
    if not _is_int(value.get("commandClass")):
        raise Malformed("bad_value", "a value needs an integer commandClass")
    if not isinstance(value.get("property"), str | int) or isinstance(value["property"], bool):
        raise Malformed("bad_value", "a value needs a string or integer property")
    if not _is_int(value.get("endpoint", 0)):
        raise Malformed("bad_value", "endpoint must be an integer")
    return value


@dataclass(frozen=True, slots=True)
class ValueMeta:
    label: str | None = None
    unit: str | None = None
    states: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, metadata: object) -> ValueMeta:
        if not isinstance(metadata, dict):
            return cls()
        label, unit, states = metadata.get("label"), metadata.get("unit"), metadata.get("states")
        return cls(
            label if isinstance(label, str) and label else None,
            unit if isinstance(unit, str) and unit else None,
            {str(k): v for k, v in states.items() if isinstance(v, str)}
            if isinstance(states, dict)
            else {},
        )


def value_to_entity(
    node_id: int, value: dict[str, Any], raw: object, *, node_label: str, meta: ValueMeta
) -> EntityState:
    label = meta.label or value.get("propertyKeyName") or value.get("propertyName")
    label = label if isinstance(label, str) and label else str(value["property"])
    attributes: dict[str, Any] = {
        "node_id": node_id,
        "endpoint": value.get("endpoint") or 0,
        "command_class": value["commandClass"],
        "property": value["property"],
        "label": label,
    }
    if value.get("propertyKey") is not None:
        attributes["property_key"] = value["propertyKey"]
    if meta.unit:
        attributes["unit"] = meta.unit
    if (named := meta.states.get(value_state(raw))) is not None:
        attributes["value_label"] = named
    return EntityState(
        value_entity_id(node_id, value), value_state(raw), attributes, name=f"{node_label} {label}"
    )


# --- the session ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class VersionReceived:
    version: ServerVersion
    schema: int


@dataclass(frozen=True, slots=True)
class Listening:
    """The start_listening result: the session is live from here on."""

    details: dict[str, Any]
    entities: list[EntityState]
    rejected: list[Malformed]


@dataclass(frozen=True, slots=True)
class ValueUpdate:
    entity: EntityState


@dataclass(frozen=True, slots=True)
class NodesChanged:
    details: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Ignored:
    reason: str
    detail: str


Output = Send | VersionReceived | Listening | ValueUpdate | NodesChanged | Ignored


class Phase(StrEnum):
    AWAIT_VERSION = "awaiting_version"
    SETTING_SCHEMA = "setting_schema"
    STARTING = "starting_listening"
    LIVE = "live"


@dataclass
class ZwaveSession:
    """One connection's protocol state. ``command_classes=None`` maps every value."""

    wanted_schema: int = SCHEMA_VERSION
    command_classes: frozenset[int] | None = frozenset(DEFAULT_COMMAND_CLASSES)
    phase: Phase = Phase.AWAIT_VERSION
    version: ServerVersion | None = None
    schema: int | None = None
    node_labels: dict[int, str] = field(default_factory=dict)
    meta: dict[str, ValueMeta] = field(default_factory=dict)  # by entity id, from the dump
    _next_id: int = 1
    _pending: dict[str, str] = field(default_factory=dict)  # messageId -> command

    def receive(self, body: object) -> list[Output]:
        if not isinstance(body, dict):
            raise Malformed("not_object", f"a message must be an object, not {type(body)}")
        kind = body.get("type")
        if kind == "version":
            return self._on_version(body)
        if kind == "result":
            return self._on_result(body)
        if kind == "event":
            return self._on_event(body.get("event"))
        if not isinstance(kind, str):
            raise Malformed("bad_message", "a message needs a string 'type'")
        return [Ignored("unknown_type", f"message type {kind[:60]!r}")]

    def _command(self, command: str, **fields: Any) -> Send:
        message_id, self._next_id = str(self._next_id), self._next_id + 1
        self._pending[message_id] = command
        return Send({"messageId": message_id, "command": command, **fields})

    def _details(self) -> dict[str, Any]:
        assert self.version is not None
        return {
            "driver_version": self.version.driver_version,
            "server_version": self.version.server_version,
            "home_id": self.version.home_id,
            "schema_version": self.schema,
            "nodes": len(self.node_labels),
        }

    def _on_version(self, body: dict[str, Any]) -> list[Output]:
        if self.phase is not Phase.AWAIT_VERSION:
            return [Ignored("unexpected", f"version while {self.phase}")]
        self.version = parse_version(body)
        self.schema = choose_schema(self.version, self.wanted_schema)
        self.phase = Phase.SETTING_SCHEMA
        send = self._command("set_api_schema", schemaVersion=self.schema)
        return [VersionReceived(self.version, self.schema), send]

    def _on_result(self, body: dict[str, Any]) -> list[Output]:
        command = self._pending.pop(str(body.get("messageId")), None)
        if command is None:
            return [Ignored("unexpected", f"result for unknown id {body.get('messageId')!r}")]
        if body.get("success") is not True:
            code = body.get("errorCode", "?")
            text = body.get("zwaveErrorMessage") or body.get("message") or ""
            raise ServerRefused(f"{command} refused: {code} {str(text)[:200]}".strip())
        if command == "set_api_schema":
            self.phase = Phase.STARTING
            return [self._command("start_listening")]
        return self._on_listening(body.get("result"))

    def _on_listening(self, result: object) -> list[Output]:
        state = result.get("state") if isinstance(result, dict) else None
        nodes = state.get("nodes") if isinstance(state, dict) else None
        if not isinstance(nodes, list):
            raise Malformed("bad_state", "start_listening result needs state.nodes")
        assert isinstance(state, dict)
        controller = state.get("controller")
        if isinstance(controller, dict) and _is_int(controller.get("homeId")):
            assert self.version is not None
            self.version = _with_home_id(self.version, controller["homeId"])
        entities: list[EntityState] = []
        rejected: list[Malformed] = []
        for node in nodes:
            try:
                entities += self._node_entities(node, rejected)
            except Malformed as exc:
                rejected.append(exc)
        self.phase = Phase.LIVE
        return [Listening(self._details(), entities, rejected)]

    def _node_entities(self, node: object, rejected: list[Malformed]) -> list[EntityState]:
        if not isinstance(node, dict) or not _is_int(node.get("nodeId")):
            raise Malformed("bad_node", "a node needs an integer nodeId")
        node_id = node["nodeId"]
        name = node.get("name")
        label = self.node_labels[node_id] = (
            name if isinstance(name, str) and name else (f"Node {node_id}")
        )
        values = node.get("values", [])
        entities = []
        for value in values if isinstance(values, list) else []:
            try:
                value = _check_value(value)
                if not self._wanted(value):
                    continue
                entity_id = value_entity_id(node_id, value)
                meta = self.meta[entity_id] = ValueMeta.of(value.get("metadata"))
                raw = value.get("value")
                entities.append(value_to_entity(node_id, value, raw, node_label=label, meta=meta))
            except Malformed as exc:
                rejected.append(exc)
        return entities

    def _wanted(self, value: dict[str, Any]) -> bool:
        return self.command_classes is None or value["commandClass"] in self.command_classes

    def _on_event(self, event: object) -> list[Output]:
        if self.phase is not Phase.LIVE:
            return [Ignored("unexpected", f"event while {self.phase}")]
        if not isinstance(event, dict) or not isinstance(event.get("event"), str):
            raise Malformed("bad_event", "an event needs an object with a string 'event'")
        source, name = event.get("source"), event["event"]
        if source == "node" and name in ("value updated", "value added"):
            return self._on_value(event)
        if source == "node" and name == "ready":
            rejected: list[Malformed] = []
            entities = self._node_entities(event.get("nodeState"), rejected)
            outputs: list[Output] = [ValueUpdate(e) for e in entities]
            return outputs + [Ignored(r.reason, r.detail) for r in rejected]
        if source == "controller" and name in ("node added", "node removed"):
            return self._on_node_list(name, event.get("node"))
        return []  # the protocol has dozens of events; the others are of no use here

    def _on_value(self, event: dict[str, Any]) -> list[Output]:
        node_id, args = event.get("nodeId"), event.get("args")
        if not _is_int(node_id):
            raise Malformed("bad_event", "a value event needs an integer nodeId")
        value = _check_value(args)
        if not self._wanted(value):
            return []
        entity_id = value_entity_id(node_id, value)
        label = self.node_labels.get(node_id, f"Node {node_id}")
        meta = self.meta.get(entity_id, ValueMeta())
        raw = value.get("newValue")
        return [ValueUpdate(value_to_entity(node_id, value, raw, node_label=label, meta=meta))]

    def _on_node_list(self, name: str, node: object) -> list[Output]:
        if not isinstance(node, dict) or not _is_int(node.get("nodeId")):
            raise Malformed("bad_event", f"{name} needs a node with an integer nodeId")
        if name == "node added":
            self.node_labels.setdefault(node["nodeId"], f"Node {node['nodeId']}")
        else:
            self.node_labels.pop(node["nodeId"], None)
        return [NodesChanged(self._details())]


def _with_home_id(version: ServerVersion, home_id: int) -> ServerVersion:
    return ServerVersion(
        version.driver_version, version.server_version, home_id,
        version.min_schema, version.max_schema,
    )  # fmt: skip
