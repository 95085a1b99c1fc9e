from __future__ import annotations

import pytest

from alarm.conditions import (
    ConditionError,
    domain_of,
    entity_id_problem,
    for_nodes,
    referenced_entity_ids,
)

DOOR = {"entity_id": "binary_sensor.door", "equals": "on"}
WINDOW = {"entity_id": "binary_sensor.window", "equals": "on"}
MOTION = {"entity_id": "binary_sensor.motion", "not_equals": "off"}


@pytest.mark.parametrize(
    ("tree", "expected"),
    [
        ({}, set()),
        (DOOR, {"binary_sensor.door"}),
        ({"entity_id": "sensor.temp", "attribute": "battery", "below": 10}, {"sensor.temp"}),
        ({"entity_id": "sensor.temp", "above": 1, "below": 10}, {"sensor.temp"}),
        ({"entity_id": "alarm.panel", "in": ["armed_away", "armed_home"]}, {"alarm.panel"}),
        ({"all": [DOOR, WINDOW]}, {"binary_sensor.door", "binary_sensor.window"}),
        ({"any": [DOOR, DOOR]}, {"binary_sensor.door"}),
        ({"not": MOTION}, {"binary_sensor.motion"}),
        ({"for": {"seconds": 30, "condition": DOOR}}, {"binary_sensor.door"}),
        ({"for": {"seconds": 0.5, "condition": DOOR}}, {"binary_sensor.door"}),
        (
            {
                "all": [
                    {"any": [DOOR, {"not": WINDOW}]},
                    {"for": {"seconds": 5, "condition": MOTION}},
                ]
            },
            {"binary_sensor.door", "binary_sensor.window", "binary_sensor.motion"},
        ),
    ],
)
def test_referenced_entity_ids(tree: object, expected: set[str]) -> None:
    assert referenced_entity_ids(tree) == expected


@pytest.mark.parametrize(
    ("tree", "message"),
    [
        ([], "conditions: expected a dict node, got list"),
        (None, "conditions: expected a dict node, got NoneType"),
        ({"all": [DOOR, DOOR, {"foo": 1}]}, "conditions.all[2]: unknown node keys ['foo']"),
        ({"all": [DOOR], "foo": 1}, "conditions: unknown node keys ['foo']"),
        ({"all": [DOOR], "any": [DOOR]}, "conditions: a node has exactly one of"),
        ({"any": []}, "conditions.any: expected a non-empty list of nodes"),
        ({"any": DOOR}, "conditions.any: expected a non-empty list of nodes"),
        ({"not": {"all": [{}]}}, "conditions.not.all[0]: empty node"),
        ({"not": "binary_sensor.door"}, "conditions.not: expected a dict node, got str"),
        ({"for": [30, DOOR]}, 'conditions.for: expected {"seconds": N, "condition": node}'),
        ({"for": {"condition": DOOR}}, "conditions.for: missing keys ['seconds']"),
        ({"for": {"seconds": 1}}, "conditions.for: missing keys ['condition']"),
        (
            {"for": {"seconds": 1, "condition": DOOR, "x": 1}},
            "conditions.for: unknown keys ['x']",
        ),
        ({"for": {"seconds": -1, "condition": DOOR}}, "conditions.for.seconds: expected a number"),
        ({"for": {"seconds": "5", "condition": DOOR}}, "conditions.for.seconds: expected a number"),
        (
            {"for": {"seconds": True, "condition": DOOR}},
            "conditions.for.seconds: expected a number",
        ),
        (
            {"for": {"seconds": 5, "condition": {"bogus": 1}}},
            "conditions.for.condition: unknown node keys ['bogus']",
        ),
        (
            {"entity_id": "binary_sensor.door", "equal": "on"},
            "conditions: unknown leaf keys ['equal']",
        ),
        ({"entity_id": "binary_sensor.door"}, "conditions: a leaf needs one of"),
        ({"entity_id": "door", "equals": "on"}, "conditions.entity_id: entity_id 'door' must"),
        ({"entity_id": 7, "equals": "on"}, "conditions.entity_id: entity_id must be a string"),
        (
            {"entity_id": "sensor.t", "attribute": "", "above": 1},
            "conditions.attribute: expected a non-empty string",
        ),
        ({"entity_id": "sensor.t", "above": "20"}, "conditions.above: expected a number"),
        ({"entity_id": "sensor.t", "below": True}, "conditions.below: expected a number"),
        ({"entity_id": "sensor.t", "in": "on"}, "conditions.in: expected a non-empty list"),
        ({"entity_id": "sensor.t", "not_in": []}, "conditions.not_in: expected a non-empty"),
        ({"entity_id": "sensor.t", "in": [["on"]]}, "conditions.in: expected a list of text"),
        ({"entity_id": "sensor.t", "equals": {"a": 1}}, "conditions.equals: expected text"),
        (
            {"for": {"seconds": 10**9, "condition": DOOR}},
            "conditions.for.seconds: expected a number from 0 to 604800",
        ),
        (
            {"for": {"seconds": float("nan"), "condition": DOOR}},
            "conditions.for.seconds: expected a number",
        ),
    ],
)
def test_bad_shapes_name_their_path(tree: object, message: str) -> None:
    with pytest.raises(ConditionError) as caught:
        referenced_entity_ids(tree)
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize(
    ("entity_id", "problem"),
    [
        ("binary_sensor.front_door", None),
        ("sensor.0x00158d0001_temperature", None),
        ("binary_sensor", "must look like domain.object_id"),
        ("Binary_sensor.door", "must look like domain.object_id"),
        ("a.b.c", "must look like domain.object_id"),
        ("sensor.front-door", "must look like domain.object_id"),
        (".door", "must look like domain.object_id"),
        ("sensor." + "x" * 250, "longer than 255"),
        (None, "must be a string"),
    ],
)
def test_entity_id_problem(entity_id: object, problem: str | None) -> None:
    found = entity_id_problem(entity_id)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


def test_domain_of_splits_at_the_dot_and_rejects_malformed_ids() -> None:
    assert domain_of("binary_sensor.front_door") == "binary_sensor"
    with pytest.raises(ValueError, match=r"domain\.object_id"):
        domain_of("front_door")


@pytest.mark.parametrize(
    ("tree", "expected"),
    [
        ({}, {}),
        (DOOR, {}),
        ({"for": {"seconds": 30, "condition": DOOR}}, {"conditions.for": 30}),
        (
            {"all": [WINDOW, {"not": {"for": {"seconds": 5, "condition": MOTION}}}]},
            {"conditions.all[1].not.for": 5},
        ),
        (
            {"for": {"seconds": 60, "condition": {"for": {"seconds": 5, "condition": DOOR}}}},
            {"conditions.for": 60, "conditions.for.condition.for": 5},
        ),
    ],
)
def test_for_nodes_by_path(tree: object, expected: dict[str, float]) -> None:
    assert for_nodes(tree) == expected
