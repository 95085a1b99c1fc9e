"""Pure Zigbee2MQTT message handling: topics, payloads, entity mapping and liveness.

No I/O and no clock: times are arguments. ``zigbee2mqtt.py`` feeds MQTT messages in.

Entity mapping: one entity per device, ``zigbee2mqtt.<slug of the friendly name>`` (e.g.
``Front Door`` -> ``zigbee2mqtt.front_door``), named after the friendly name. Its attributes are
the device's JSON state (merged over the previous one: Zigbee2MQTT may send partial updates),
minus attributes that change on every message (``linkquality``, ...). Its state is the first
primary property present, in Home Assistant's binary-sensor convention: ``contact`` -> ``on``
when open (contact false); ``occupancy``, ``presence``, ``water_leak``, ``smoke``, ``gas``,
``carbon_monoxide``, ``tamper``, ``vibration`` -> ``on``/``off``; then ``state`` (``ON`` ->
``on``), ``lock_state`` and ``action`` as lower-case text; else ``unknown``. A device whose
``<name>/availability`` says offline is ``unavailable`` until it says online again.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from services.integrations.payloads import Malformed, decode_json

MAX_FIELDS = 200  # a device state with more keys than this is not a device state
BINARY_PROPERTIES = (
    "occupancy", "presence", "water_leak", "smoke", "gas", "carbon_monoxide", "tamper",
    "vibration",
)  # fmt: skip
TEXT_PROPERTIES = ("state", "lock_state", "action")
COMMAND_SUFFIXES = ("set", "get")
# Bridge topics we do not use (informational, or request/response traffic).
IGNORED_BRIDGE = ("info", "logging", "event", "extensions", "groups", "definitions", "health",
                  "converters", "options", "config", "response", "request", "log")  # fmt: skip


# --- topics ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    kind: str  # bridge_state | bridge_devices | ignored | device | availability | unknown
    device: str = ""


def route(base: str, topic: str, known: Collection[str] = frozenset()) -> Route:
    """What a message on ``topic`` (under ``base``) is."""
    rest = topic[len(base) + 1 :] if topic.startswith(base + "/") else ""
    if not rest or rest.startswith("/") or rest.endswith("/"):
        return Route("unknown")
    if rest == "bridge/state":
        return Route("bridge_state")
    if rest == "bridge/devices":
        return Route("bridge_devices")
    if rest.startswith("bridge/"):
        first = rest.split("/")[1]
        return Route("ignored") if first in IGNORED_BRIDGE else Route("unknown")
    if rest in known:
        return Route("device", rest)
    head, _, last = rest.rpartition("/")
    if head and last == "availability":
        return Route("availability", head)
    if head and (last in COMMAND_SUFFIXES or head.rpartition("/")[2] in COMMAND_SUFFIXES):
        return Route("ignored")  # <name>/set, <name>/get, <name>/set/<attribute>
    if head and head in known:
        return Route("ignored")  # <name>/<attribute> (attribute output), not used
    return Route("device", rest)


# --- payloads ----------------------------------------------------------------------------------


def online_state(payload: bytes) -> bool:
    """``online``/``offline``, plain or as ``{"state": ...}`` (bridge/state, availability)."""
    text = payload.strip()
    if text in (b"online", b"offline"):
        return text == b"online"
    value = decode_json(payload)
    state = value.get("state") if isinstance(value, dict) else value
    if state in ("online", "offline"):
        return state == "online"
    raise Malformed("wrong_type", f"expected online or offline, got {str(value)[:60]!r}")


@dataclass(frozen=True)
class DeviceInfo:
    friendly_name: str
    ieee_address: str = ""
    type: str = ""
    model: str = ""
    vendor: str = ""
    description: str = ""


def devices(payload: bytes) -> dict[str, DeviceInfo]:
    """bridge/devices: friendly name -> device (the coordinator left out)."""
    value = decode_json(payload)
    if not isinstance(value, list):
        raise Malformed("wrong_type", f"bridge/devices must be a list, got {type(value).__name__}")
    found: dict[str, DeviceInfo] = {}
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("friendly_name"), str):
            raise Malformed("wrong_type", "a device without a friendly_name")
        if item.get("type") == "Coordinator":
            continue
        definition = item.get("definition")
        if not isinstance(definition, dict):
            definition = {}
        found[item["friendly_name"]] = DeviceInfo(
            item["friendly_name"],
            ieee_address=_text(item.get("ieee_address")),
            type=_text(item.get("type")),
            model=_text(definition.get("model")),
            vendor=_text(definition.get("vendor")),
            description=_text(definition.get("description")),
        )
    return found


def device_state(payload: bytes) -> dict[str, Any]:
    """A device message: a JSON object whose primary properties have their types."""
    value = decode_json(payload)
    if not isinstance(value, dict):
        raise Malformed("not_object", f"expected a JSON object, got {type(value).__name__}")
    if len(value) > MAX_FIELDS:
        raise Malformed("too_many_fields", f"{len(value)} fields (at most {MAX_FIELDS})")
    for name in ("contact", *BINARY_PROPERTIES):
        if name in value and not isinstance(value[name], bool | None):
            raise Malformed("wrong_type", f"{name} must be true or false, got {value[name]!r}")
    for name in TEXT_PROPERTIES:
        if name in value and not isinstance(value[name], str | None):
            raise Malformed("wrong_type", f"{name} must be text, got {value[name]!r}")
    return value


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


# --- entities ----------------------------------------------------------------------------------

_NOT_SLUG = re.compile(r"[^a-z0-9]+")


def slug(name: str) -> str:
    """``Front Door/Sensor`` -> ``front_door_sensor``; never empty."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    text = _NOT_SLUG.sub("_", ascii_name.lower()).strip("_")
    return text[:200] or "device_" + format(abs(hash_text(name)), "x")[:12]


def hash_text(text: str) -> int:
    """A stable (not per-process salted) hash for names that slug to nothing."""
    value = 0
    for char in text:
        value = (value * 131 + ord(char)) % (1 << 61)
    return value


def entity_id(friendly_name: str) -> str:
    return f"zigbee2mqtt.{slug(friendly_name)}"


def primary_state(attributes: dict[str, Any]) -> str:
    if isinstance(attributes.get("contact"), bool):
        return "off" if attributes["contact"] else "on"  # contact true = closed
    for name in BINARY_PROPERTIES:
        if isinstance(attributes.get(name), bool):
            return "on" if attributes[name] else "off"
    for name in TEXT_PROPERTIES:
        value = attributes.get(name)
        if isinstance(value, str) and value:
            return value.lower()[:255]
    return "unknown"


@dataclass(frozen=True)
class EntityUpdate:
    entity_id: str
    state: str
    attributes: dict[str, Any]
    name: str


@dataclass
class Devices:
    """The devices seen so far: merged attributes and availability, per friendly name."""

    ignored: frozenset[str] = frozenset()
    attributes: dict[str, dict[str, Any]] = field(default_factory=dict)
    offline: set[str] = field(default_factory=set)

    def on_state(self, name: str, state: dict[str, Any]) -> EntityUpdate:
        kept = {k: v for k, v in state.items() if k not in self.ignored}
        merged = {**self.attributes.get(name, {}), **kept}
        self.attributes[name] = merged
        return self._update(name)

    def on_availability(self, name: str, online: bool) -> EntityUpdate | None:
        """The entity's new state, or None when nothing changed."""
        if online == (name not in self.offline):
            return None
        (self.offline.discard if online else self.offline.add)(name)
        return self._update(name)

    def _update(self, name: str) -> EntityUpdate:
        attributes = self.attributes.get(name, {})
        state = "unavailable" if name in self.offline else primary_state(attributes)
        return EntityUpdate(entity_id(name), state, dict(attributes), name)


# --- liveness ----------------------------------------------------------------------------------


@dataclass
class Liveness:
    """Available while the bridge is not offline and a message came in the last ``stale_after``
    seconds. Inputs return the new availability when it changed, else None."""

    stale_after: float
    last_message: float | None = None
    bridge_online: bool | None = None
    available: bool = False

    def on_message(self, at: float, bridge_online: bool | None = None) -> bool | None:
        self.last_message = at
        if bridge_online is not None:
            self.bridge_online = bridge_online
        return self._settle(at)

    def on_timer(self, at: float) -> bool | None:
        return self._settle(at)

    def expires_at(self) -> float | None:
        """When availability would lapse without another message (None: not available)."""
        if not self.available or self.last_message is None:
            return None
        return self.last_message + self.stale_after

    def _settle(self, at: float) -> bool | None:
        fresh = self.last_message is not None and at - self.last_message < self.stale_after
        available = fresh and self.bridge_online is not False
        if available == self.available:
            return None
        self.available = available
        return available
