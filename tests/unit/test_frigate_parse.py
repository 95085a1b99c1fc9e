"""Frigate's pure parts: availability, event parsing, merging updates of one event."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from services.integrations import frigate_parse as frigate
from services.integrations.payloads import Malformed

T0 = 1_700_000_000.0


def event_payload(kind: str = "new", **after: Any) -> bytes:
    base = {"id": "e1", "camera": "front", "label": "person", "top_score": 0.8,
            "start_time": T0, "end_time": None, "entered_zones": ["yard"],
            "current_zones": ["yard"], "has_snapshot": False, "has_clip": False}  # fmt: skip
    return json.dumps({"type": kind, "before": {}, "after": {**base, **after}}).encode()


def test_a_new_event() -> None:
    detection = frigate.event(event_payload())
    assert detection == frigate.Detection(
        "e1", "front", "person", score=0.8, zones=("yard",),
        started_at=datetime.fromtimestamp(T0, tz=UTC), type="new",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("changes", "field", "value"),
    [
        ({"top_score": None, "score": 0.6}, "score", 0.6),
        ({"sub_label": ["Bob", 0.9]}, "sub_label", "Bob"),
        ({"sub_label": "Alice"}, "sub_label", "Alice"),
        ({"current_zones": ["door"]}, "zones", ("yard", "door")),
        ({"end_time": T0 + 5}, "ended_at", datetime.fromtimestamp(T0 + 5, tz=UTC)),
        ({"has_clip": True}, "has_clip", True),
        ({"false_positive": None}, "false_positive", False),
    ],
)
def test_event_fields(changes: dict[str, Any], field: str, value: Any) -> None:
    assert getattr(frigate.event(event_payload(**changes)), field) == value


def test_before_is_used_without_after() -> None:
    payload = json.dumps({"type": "end", "before": {"id": "e", "camera": "c", "label": "l"}})
    assert frigate.event(payload.encode()).event_id == "e"


@pytest.mark.parametrize(
    ("payload", "kind"),
    [
        (b"{", "bad_json"),
        (b"[]", "not_object"),
        (b'{"type": "new"}', "wrong_type"),
        (json.dumps({"type": "boom", "after": {}}).encode(), "wrong_type"),
        (event_payload(id=""), "wrong_type"),
        (event_payload(id="x" * 101), "wrong_type"),
        (event_payload(camera=3), "wrong_type"),
        (event_payload(top_score="high"), "wrong_type"),
        (event_payload(top_score=True), "wrong_type"),
        (b'{"type":"new","after":{"id":"e","camera":"c","label":"l","score":NaN}}', "wrong_type"),
        (event_payload(start_time=1e300), "wrong_type"),
        (event_payload(entered_zones="yard"), "wrong_type"),
        (event_payload(has_clip="yes"), "wrong_type"),
        (event_payload(sub_label=5), "wrong_type"),
    ],
)
def test_event_rejects(payload: bytes, kind: str) -> None:
    with pytest.raises(Malformed) as error:
        frigate.event(payload)
    assert error.value.kind == kind


@pytest.mark.parametrize(("payload", "online"), [(b"online", True), (b"offline\n", False)])
def test_available(payload: bytes, online: bool) -> None:
    assert frigate.available(payload) is online


def test_available_rejects() -> None:
    with pytest.raises(Malformed, match="wrong_type"):
        frigate.available(b'{"state": "online"}')


START = datetime(2025, 1, 1, tzinfo=UTC)
LATER = datetime(2025, 1, 1, 0, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("stored", "update", "expected"),
    [
        (None, {"score": 0.5, "zones": ("a",), "started_at": START},
         {"score": 0.5, "zones": ["a"], "started_at": START, "ended_at": None}),
        ({"score": 0.9, "zones": ["a"], "started_at": START, "ended_at": None, "sub_label": "Bob"},
         {"score": 0.5, "zones": ("b", "a"), "started_at": LATER, "ended_at": LATER},
         {"score": 0.9, "zones": ["a", "b"], "started_at": START, "ended_at": LATER,
          "sub_label": "Bob"}),
        ({"score": None, "zones": [], "started_at": None, "ended_at": LATER},
         {"score": 0.7, "started_at": START},
         {"score": 0.7, "started_at": START, "ended_at": LATER}),
    ],
)  # fmt: skip
def test_merge(
    stored: dict[str, Any] | None, update: dict[str, Any], expected: dict[str, Any]
) -> None:
    merged = frigate.merge(stored, frigate.Detection("e", "cam", "person", **update))
    assert {k: merged[k] for k in expected} == expected
