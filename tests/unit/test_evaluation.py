from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from alarm.evaluation import EntityView, evaluate, leaf_holds, same

NOW = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)
DOOR_ON = {"entity_id": "binary_sensor.door", "equals": "on"}
WINDOW_ON = {"entity_id": "binary_sensor.window", "equals": "on"}


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


def door_open_for(seconds: float, condition: dict[str, Any] = DOOR_ON) -> dict[str, Any]:
    return {"for": {"seconds": seconds, "condition": condition}}


def states(**by_id: str) -> dict[str, EntityView]:
    return {f"binary_sensor.{k}": EntityView(v) for k, v in by_id.items()}


@pytest.mark.parametrize(
    ("value", "operand", "expected"),
    [
        ("on", "on", True),
        ("on", "On", False),  # text is exact
        ("21.0", 21, True),
        ("21.5", 21, False),
        ("abc", 21, False),
        (21, "21", True),
        ("on", True, True),
        ("ON", True, True),
        ("off", False, True),
        ("1", True, True),
        ("open", True, False),  # not a truth word
        (True, "on", True),
        (False, "off", True),
        (None, None, True),
        ("", None, False),
        (None, "x", False),
        ("nan", 1, False),
    ],
)
def test_same(value: Any, operand: Any, expected: bool) -> None:
    assert same(value, operand) is expected


@pytest.mark.parametrize(
    ("leaf", "entity", "expected"),
    [
        (DOOR_ON, EntityView("on"), True),
        (DOOR_ON, EntityView("off"), False),
        (DOOR_ON, None, False),  # unknown entity
        ({"entity_id": "s.t", "not_equals": "on"}, None, False),  # unknown is not evidence
        ({"entity_id": "s.t", "not_equals": "on"}, EntityView("off"), True),
        ({"entity_id": "s.t", "in": ["a", "b"]}, EntityView("b"), True),
        ({"entity_id": "s.t", "not_in": ["a", "b"]}, EntityView("b"), False),
        ({"entity_id": "s.t", "above": 20}, EntityView("20.5"), True),
        ({"entity_id": "s.t", "above": 20}, EntityView("20"), False),  # strict
        ({"entity_id": "s.t", "below": 20}, EntityView("unavailable"), False),
        ({"entity_id": "s.t", "above": 10, "below": 20}, EntityView("15"), True),
        ({"entity_id": "s.t", "above": 10, "below": 20}, EntityView("25"), False),
        ({"entity_id": "s.t", "attribute": "battery", "below": 10},
         EntityView("on", {"battery": 5}), True),
        ({"entity_id": "s.t", "attribute": "battery", "below": 10}, EntityView("on", {}), False),
        ({"entity_id": "s.t", "attribute": "b", "equals": None}, EntityView("on", {"b": None}),
         True),
        ({"entity_id": "s.t", "attribute": "b", "equals": None}, EntityView("on", {}), False),
    ],
)  # fmt: skip
def test_leaf_holds(leaf: dict[str, Any], entity: EntityView | None, expected: bool) -> None:
    assert leaf_holds(leaf, entity) is expected


@pytest.mark.parametrize(
    ("tree", "entities", "expected"),
    [
        ({}, {}, True),
        (DOOR_ON, states(door="on"), True),
        ({"all": [DOOR_ON, WINDOW_ON]}, states(door="on", window="off"), False),
        ({"any": [DOOR_ON, WINDOW_ON]}, states(door="on", window="off"), True),
        ({"not": DOOR_ON}, states(door="off"), True),
        ({"not": DOOR_ON}, states(), True),  # not(unknown -> false)
        ({"all": [{"any": [DOOR_ON, WINDOW_ON]}, {"not": WINDOW_ON}]}, states(door="on"), True),
    ],
)
def test_trees_without_for(tree: Any, entities: dict[str, EntityView], expected: bool) -> None:
    result = evaluate(tree, entities, {}, NOW)
    assert result.value is expected
    assert result.trace["conditions"] is expected
    assert result.fors == {}


def test_a_for_node_starts_waiting_when_its_child_holds() -> None:
    result = evaluate(door_open_for(30), states(door="on"), {}, NOW)
    assert result.value is False
    state = result.fors["conditions.for"]
    assert (state.status, state.since, state.due) == ("scheduled", NOW, NOW + timedelta(seconds=30))
    assert result.waiting() == {"conditions.for": NOW + timedelta(seconds=30)}


@pytest.mark.parametrize(
    ("since", "status", "value"),
    [
        (ago(29.999), "scheduled", False),
        (ago(30), "holding", True),  # exactly at the due time: holds
        (ago(3600), "holding", True),
    ],
)
def test_a_for_node_holds_once_its_time_has_come(since: datetime, status: str, value: bool) -> None:
    result = evaluate(door_open_for(30), states(door="on"), {"conditions.for": since}, NOW)
    assert result.fors["conditions.for"].status == status
    assert result.fors["conditions.for"].since == since  # kept, not restarted
    assert result.value is value


def test_a_for_node_goes_idle_when_its_child_stops_holding() -> None:
    result = evaluate(door_open_for(30), states(door="off"), {"conditions.for": ago(10)}, NOW)
    state = result.fors["conditions.for"]
    assert (state.status, state.since, state.due) == ("idle", None, None)
    assert result.waiting() == {}


def test_zero_seconds_holds_at_once() -> None:
    result = evaluate(door_open_for(0), states(door="on"), {}, NOW)
    assert result.value is True
    assert result.fors["conditions.for"].status == "holding"


def test_a_since_in_the_future_restarts_from_now() -> None:
    future = NOW + timedelta(seconds=5)
    result = evaluate(door_open_for(30), states(door="on"), {"conditions.for": future}, NOW)
    assert result.fors["conditions.for"].since == NOW


def test_every_node_is_evaluated_without_short_circuit() -> None:
    tree = {"all": [WINDOW_ON, door_open_for(30)]}  # the window is closed
    result = evaluate(tree, states(door="on", window="off"), {}, NOW)
    assert result.value is False
    # the for node still starts counting: when the window opens later, the door's time counts
    assert result.fors["conditions.all[1].for"].status == "scheduled"
    assert result.trace == {
        "conditions.all[0]": False,
        "conditions.all[1].for.condition": True,
        "conditions.all[1]": False,  # the for node (its runtime's node is ...all[1].for)
        "conditions": False,
    }


def test_nested_for_nodes_have_their_own_paths() -> None:
    tree = {"any": [door_open_for(10), door_open_for(20, WINDOW_ON)]}
    since = {"conditions.any[0].for": ago(15), "conditions.any[1].for": ago(15)}
    result = evaluate(tree, states(door="on", window="on"), since, NOW)
    assert result.fors["conditions.any[0].for"].status == "holding"
    assert result.fors["conditions.any[1].for"].status == "scheduled"
    assert result.value is True
