"""Home Assistant's WebSocket API (``/api/websocket``), without I/O.

The conversation, as documented (developers.home-assistant.io, "WebSocket API"):

1. the server sends ``{"type": "auth_required", "ha_version": ...}``;
2. we send ``{"type": "auth", "access_token": ...}``;
3. the server answers ``auth_ok`` (with ``ha_version``) or ``auth_invalid`` (with
   ``message``) and, after ``auth_invalid``, closes;
4. commands carry an ``id`` that only grows: we send ``subscribe_events`` for
   ``state_changed`` (answered by a ``result``), then ``get_states`` (its ``result`` is the
   list of every state). Subscribing first and fetching second leaves no gap: an event fired
   before the fetch arrives before its result, one fired after arrives after it;
5. ``event`` messages carry the subscription's id and ``event.data`` = ``entity_id``,
   ``old_state``, ``new_state`` (``null`` when the entity was removed);
6. ``{"id": n, "type": "ping"}`` is answered by ``{"id": n, "type": "pong"}``.

``HaSession.receive(message)`` takes one parsed message and returns what to do (``Send``,
``Authenticated``, ``AuthRejected``, ``Snapshot``, ``StateUpdate``, ``PongReceived``,
``Ignored``); input that breaks the documented shapes raises ``Malformed`` with a short
reason the client counts.
"""

from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from services.integrations.ws_support import EntityState, Malformed, ServerRefused

# The same rule as alarm.conditions.ENTITY_ID_PATTERN (a test keeps the two equal): an id
# the alarm app would refuse is rejected here, counted, and never reaches on_state.
ENTITY_ID_PATTERN = re.compile(r"^[a-z0-9_]+\.[a-z0-9_]+$")
ENTITY_ID_MAX_LENGTH = 255
STATE_MAX_LENGTH = 255  # Home Assistant's own limit, and the Entity.state column's


# --- states --------------------------------------------------------------------------------


def entity_id_problem(entity_id: object) -> str | None:
    if not isinstance(entity_id, str):
        return f"entity_id must be a string, not {type(entity_id).__name__}"
    if len(entity_id) > ENTITY_ID_MAX_LENGTH or not ENTITY_ID_PATTERN.match(entity_id):
        return f"entity_id {entity_id[:80]!r} is not domain.object_id"
    return None


def parse_state(obj: object) -> EntityState:
    """One state object (``get_states``, ``GET /api/states``, ``new_state``)."""
    if not isinstance(obj, dict):
        raise Malformed("bad_state", f"a state must be an object, not {type(obj).__name__}")
    entity_id = obj.get("entity_id")
    if problem := entity_id_problem(entity_id):
        raise Malformed("bad_entity_id", problem)
    assert isinstance(entity_id, str)
    state = obj.get("state")
    if not isinstance(state, str) or len(state) > STATE_MAX_LENGTH:
        raise Malformed("bad_state", f"{entity_id}: state must be a string of <= 255 characters")
    attributes = obj.get("attributes", {})
    if not isinstance(attributes, dict):
        raise Malformed("bad_state", f"{entity_id}: attributes must be an object")
    name = attributes.get("friendly_name")
    return EntityState(
        entity_id,
        state,
        attributes,
        name=name if isinstance(name, str) and name else None,
        last_changed=_aware_datetime(obj.get("last_changed")),
    )


def parse_states(items: object) -> tuple[list[EntityState], list[Malformed]]:
    """Every good state of a list; a bad item is returned apart and spoils nothing else."""
    if not isinstance(items, list):
        raise Malformed("bad_states", f"states must be a list, not {type(items).__name__}")
    states, rejected = [], []
    for item in items:
        try:
            states.append(parse_state(item))
        except Malformed as exc:
            rejected.append(exc)
    return states, rejected


def _aware_datetime(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


@dataclass(frozen=True, slots=True)
class EntityFilter:
    """Which entity ids to take: any ``include`` glob (all when empty), no ``exclude`` glob."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    def __call__(self, entity_id: str) -> bool:
        if self.include and not any(fnmatch.fnmatchcase(entity_id, p) for p in self.include):
            return False
        return not any(fnmatch.fnmatchcase(entity_id, p) for p in self.exclude)


# --- incoming messages ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Incoming:
    type: str
    body: dict[str, Any]
    id: int | None = None


def decode_frame(text: str | bytes) -> list[Incoming]:
    """A text frame: one JSON object, or an array of them (Home Assistant's coalescing)."""
    try:
        decoded = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Malformed("bad_json", str(exc)) from None
    items = decoded if isinstance(decoded, list) else [decoded]
    return [parse_message(item) for item in items]


def parse_message(obj: object) -> Incoming:
    if not isinstance(obj, dict):
        raise Malformed("not_object", f"a message must be an object, not {type(obj).__name__}")
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise Malformed("bad_message", "a message needs a string 'type'")
    message_id = obj.get("id")
    if message_id is not None and (type(message_id) is not int or message_id < 0):
        raise Malformed("bad_message", f"'id' must be a non-negative integer: {message_id!r}")
    return Incoming(kind, obj, message_id)


@dataclass(frozen=True, slots=True)
class StateChanged:
    entity_id: str
    new_state: EntityState | None  # None: the entity was removed from Home Assistant


def parse_state_changed(event: object) -> StateChanged:
    if not isinstance(event, dict) or not isinstance(data := event.get("data"), dict):
        raise Malformed("bad_event", "an event needs an object 'event.data'")
    entity_id = data.get("entity_id")
    if problem := entity_id_problem(entity_id):
        raise Malformed("bad_entity_id", problem)
    assert isinstance(entity_id, str)
    new_state = data.get("new_state")
    if new_state is None:
        return StateChanged(entity_id, None)
    parsed = parse_state(new_state)
    if parsed.entity_id != entity_id:
        raise Malformed("bad_event", f"new_state of {parsed.entity_id} in an event of {entity_id}")
    return StateChanged(entity_id, parsed)


# --- what the session tells the client to do -----------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Authenticated:
    version: str | None


@dataclass(frozen=True, slots=True)
class AuthRejected:
    message: str


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The answer to get_states: the session is live from here on."""

    states: list[EntityState]
    rejected: list[Malformed]


@dataclass(frozen=True, slots=True)
class StateUpdate:
    change: StateChanged


@dataclass(frozen=True, slots=True)
class PongReceived:
    id: int


@dataclass(frozen=True, slots=True)
class Ignored:
    """Well-formed but unexpected (an unknown type, a stray result): counted, not fatal."""

    reason: str
    detail: str


Output = Send | Authenticated | AuthRejected | Snapshot | StateUpdate | PongReceived | Ignored


class Phase(StrEnum):
    AWAIT_AUTH_REQUIRED = "awaiting_auth_required"
    AWAIT_AUTH_RESULT = "awaiting_auth_result"
    SUBSCRIBING = "subscribing"
    FETCHING_STATES = "fetching_states"
    LIVE = "live"
    AUTH_FAILED = "auth_failed"


@dataclass
class HaSession:
    """One connection's protocol state; a new connection gets a new session."""

    token: str = field(repr=False)
    event_type: str = "state_changed"
    phase: Phase = Phase.AWAIT_AUTH_REQUIRED
    version: str | None = None
    _next_id: int = 1
    _subscription_id: int | None = None
    _states_id: int | None = None
    _pings: set[int] = field(default_factory=set)

    @property
    def authenticated(self) -> bool:
        return self.phase in (Phase.SUBSCRIBING, Phase.FETCHING_STATES, Phase.LIVE)

    def ping(self) -> Send:
        if not self.authenticated:
            raise RuntimeError("Home Assistant answers pings only after auth_ok")
        message_id = self._command_id()
        self._pings.add(message_id)
        return Send({"id": message_id, "type": "ping"})

    def receive(self, message: Incoming) -> list[Output]:
        handler = _HANDLERS.get(message.type)
        if handler is None:
            return [Ignored("unknown_type", f"message type {message.type[:60]!r}")]
        return handler(self, message)

    def _command_id(self) -> int:
        message_id, self._next_id = self._next_id, self._next_id + 1
        return message_id

    def _out_of_phase(self, message: Incoming) -> list[Output]:
        return [Ignored("unexpected", f"{message.type} while {self.phase}")]

    def _on_auth_required(self, message: Incoming) -> list[Output]:
        if self.phase is not Phase.AWAIT_AUTH_REQUIRED:
            return self._out_of_phase(message)
        self.version = _version(message.body)
        self.phase = Phase.AWAIT_AUTH_RESULT
        return [Send({"type": "auth", "access_token": self.token})]

    def _on_auth_ok(self, message: Incoming) -> list[Output]:
        if self.phase is not Phase.AWAIT_AUTH_RESULT:
            return self._out_of_phase(message)
        self.version = _version(message.body) or self.version
        self.phase = Phase.SUBSCRIBING
        self._subscription_id = self._command_id()
        subscribe = {"id": self._subscription_id, "type": "subscribe_events"}
        return [Authenticated(self.version), Send({**subscribe, "event_type": self.event_type})]

    def _on_auth_invalid(self, message: Incoming) -> list[Output]:
        if self.phase is not Phase.AWAIT_AUTH_RESULT:
            return self._out_of_phase(message)
        self.phase = Phase.AUTH_FAILED
        text = message.body.get("message")
        return [AuthRejected(text[:200] if isinstance(text, str) and text else "auth_invalid")]

    def _on_result(self, message: Incoming) -> list[Output]:
        success = message.body.get("success")
        if not isinstance(success, bool):
            raise Malformed("bad_message", "a result needs a boolean 'success'")
        if message.id is not None and message.id == self._subscription_id:
            return self._on_subscribed(success, message.body)
        if message.id is not None and message.id == self._states_id:
            return self._on_states(success, message.body)
        return [Ignored("unexpected", f"result for unknown id {message.id!r}")]

    def _on_subscribed(self, success: bool, body: dict[str, Any]) -> list[Output]:
        if self.phase is not Phase.SUBSCRIBING:
            return [Ignored("unexpected", "a second result of subscribe_events")]
        if not success:
            raise ServerRefused(f"subscribe_events refused: {_error_text(body)}")
        self.phase = Phase.FETCHING_STATES
        self._states_id = self._command_id()
        return [Send({"id": self._states_id, "type": "get_states"})]

    def _on_states(self, success: bool, body: dict[str, Any]) -> list[Output]:
        if self.phase is not Phase.FETCHING_STATES:
            return [Ignored("unexpected", "a second result of get_states")]
        if not success:
            raise ServerRefused(f"get_states refused: {_error_text(body)}")
        states, rejected = parse_states(body.get("result"))
        self.phase = Phase.LIVE
        return [Snapshot(states, rejected)]

    def _on_event(self, message: Incoming) -> list[Output]:
        if message.id is None or message.id != self._subscription_id or not self.authenticated:
            return [Ignored("unexpected", f"event for unknown subscription {message.id!r}")]
        event = message.body.get("event")
        if isinstance(event, dict) and event.get("event_type", self.event_type) != self.event_type:
            return [Ignored("unexpected", "an event of another type")]
        return [StateUpdate(parse_state_changed(event))]

    def _on_pong(self, message: Incoming) -> list[Output]:
        if message.id is None or message.id not in self._pings:
            return [Ignored("unexpected", f"pong for unknown id {message.id!r}")]
        self._pings.discard(message.id)
        return [PongReceived(message.id)]


_HANDLERS = {
    "auth_required": HaSession._on_auth_required,
    "auth_ok": HaSession._on_auth_ok,
    "auth_invalid": HaSession._on_auth_invalid,
    "result": HaSession._on_result,
    "event": HaSession._on_event,
    "pong": HaSession._on_pong,
}


def _version(body: dict[str, Any]) -> str | None:
    version = body.get("ha_version")
    return version[:40] if isinstance(version, str) and version else None


def _error_text(body: dict[str, Any]) -> str:
    error = body.get("error")
    if isinstance(error, dict):
        return f"{error.get('code', '?')}: {str(error.get('message', ''))[:200]}"
    return "no error given"
