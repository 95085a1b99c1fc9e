"""Pure Frigate message handling: ``<prefix>/available`` and ``<prefix>/events``.

An event message is ``{"type": "new"|"update"|"end", "before": {...}, "after": {...}}``; the
``after`` object (else ``before``) describes the tracked object. ``merge`` folds an update into
what is stored for the same event id: the highest score seen, every zone entered, the earliest
start, the end once known, and the latest flags.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from services.integrations.payloads import Malformed, decode_json

EVENT_TYPES = ("new", "update", "end")
MAX_TEXT = 100


def available(payload: bytes) -> bool:
    text = payload.strip()
    if text in (b"online", b"offline"):
        return text == b"online"
    raise Malformed("wrong_type", f"expected online or offline, got {payload[:40]!r}")


@dataclass(frozen=True)
class Detection:
    event_id: str
    camera: str
    label: str
    sub_label: str = ""
    score: float | None = None
    zones: tuple[str, ...] = ()
    started_at: datetime | None = None
    ended_at: datetime | None = None
    has_snapshot: bool = False
    has_clip: bool = False
    false_positive: bool = False
    type: str = "update"


def event(payload: bytes) -> Detection:
    value = decode_json(payload)
    if not isinstance(value, dict):
        raise Malformed("not_object", f"expected a JSON object, got {type(value).__name__}")
    kind = value.get("type", "update")
    if kind not in EVENT_TYPES:
        raise Malformed("wrong_type", f"type must be one of {', '.join(EVENT_TYPES)}")
    after = value.get("after") if value.get("after") is not None else value.get("before")
    if not isinstance(after, dict):
        raise Malformed("wrong_type", "an event needs an 'after' (or 'before') object")
    return Detection(
        event_id=_required_text(after, "id"),
        camera=_required_text(after, "camera"),
        label=_required_text(after, "label"),
        sub_label=_sub_label(after.get("sub_label")),
        score=_score(after),
        zones=_zones(after),
        started_at=_time(after, "start_time"),
        ended_at=_time(after, "end_time"),
        has_snapshot=_flag(after, "has_snapshot"),
        has_clip=_flag(after, "has_clip"),
        false_positive=_flag(after, "false_positive"),
        type=kind,
    )


def merge(stored: dict[str, Any] | None, update: Detection) -> dict[str, Any]:
    """The row's new field values given what is stored (None: a new event)."""
    stored = stored or {}
    scores = [s for s in (stored.get("score"), update.score) if s is not None]
    zones = list(stored.get("zones") or [])
    zones += [zone for zone in update.zones if zone not in zones]
    starts = [t for t in (stored.get("started_at"), update.started_at) if t is not None]
    return {
        "camera": update.camera,
        "label": update.label,
        "sub_label": update.sub_label or stored.get("sub_label", ""),
        "score": max(scores) if scores else None,
        "zones": zones,
        "started_at": min(starts) if starts else None,
        "ended_at": update.ended_at or stored.get("ended_at"),
        "has_snapshot": update.has_snapshot,
        "has_clip": update.has_clip,
        "false_positive": update.false_positive,
    }


def _required_text(obj: dict[str, Any], name: str) -> str:
    value = obj.get(name)
    if not isinstance(value, str) or not value or len(value) > MAX_TEXT:
        raise Malformed("wrong_type", f"{name} must be text of 1 to {MAX_TEXT} characters")
    return value


def _sub_label(value: object) -> str:
    # Frigate 0.12+ sends [name, score]; older versions a plain string.
    if isinstance(value, list) and value and isinstance(value[0], str):
        value = value[0]
    if value is None or value == "":
        return ""
    if not isinstance(value, str):
        raise Malformed("wrong_type", "sub_label must be text or [text, score]")
    return value[:MAX_TEXT]


def _number(obj: dict[str, Any], name: str) -> float | None:
    value = obj.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise Malformed("wrong_type", f"{name} must be a finite number, got {value!r}")
    return float(value)


def _score(obj: dict[str, Any]) -> float | None:
    top = _number(obj, "top_score")
    return top if top is not None else _number(obj, "score")


def _zones(obj: dict[str, Any]) -> tuple[str, ...]:
    zones: list[str] = []
    for name in ("entered_zones", "current_zones"):
        value = obj.get(name) or []
        if not isinstance(value, list) or not all(isinstance(z, str) for z in value):
            raise Malformed("wrong_type", f"{name} must be a list of zone names")
        zones += [z[:MAX_TEXT] for z in value if z not in zones]
    return tuple(zones[:50])


def _time(obj: dict[str, Any], name: str) -> datetime | None:
    seconds = _number(obj, name)
    if seconds is None:
        return None
    try:
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise Malformed("wrong_type", f"{name} is not a time: {seconds!r}") from None


def _flag(obj: dict[str, Any], name: str) -> bool:
    value = obj.get(name, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise Malformed("wrong_type", f"{name} must be true or false")
    return value
