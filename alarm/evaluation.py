"""Evaluating a condition tree against entity states at one instant. Pure: no Django, no I/O.

The tree's shape is checked by ``alarm.conditions`` (rules are validated before they are
saved); this module decides whether it holds. A ``for`` node remembers since when its child
holds (``since``, kept by the caller between evaluations, per node path): it holds once
``now - since >= seconds``. So one evaluation tells, for every ``for`` node, whether it is
idle (its child does not hold), waiting (its child holds; a timer is due at ``since +
seconds``) or holding. Every node is evaluated (no short-circuit), so a ``for`` node under an
``all`` whose sibling is false still keeps its ``since`` right.

Leaves compare one value (the state, or an ``attribute``) with operators that must all hold:

- ``equals`` / ``not_equals`` / ``in`` / ``not_in``: text compares as text; a number operand
  compares numerically with a numeric state ("21.0" equals 21); a true/false operand matches
  on/true/yes/1 and off/false/no/0 (any case); null matches a missing value only;
- ``above`` / ``below``: numeric, strict; a value that is not a number fails them.

A leaf whose entity is unknown or whose attribute is missing is false whatever its operators
(``not_equals`` included): an unknown value is not evidence of anything.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from alarm.conditions import BRANCH_KEYS, LEAF_OPERATORS, ROOT_PATH

_TRUE = frozenset({"on", "true", "yes", "1"})
_FALSE = frozenset({"off", "false", "no", "0"})
_MISSING = object()


@dataclass(frozen=True)
class EntityView:
    state: str
    attributes: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ForState:
    """A ``for`` node after an evaluation. ``since`` None: its child does not hold."""

    seconds: float
    since: datetime | None = None
    holding: bool = False

    @property
    def due(self) -> datetime | None:
        """When it holds (or held), once its child holds; None while idle."""
        return None if self.since is None else self.since + timedelta(seconds=self.seconds)

    @property
    def status(self) -> str:
        if self.since is None:
            return "idle"
        return "holding" if self.holding else "scheduled"


@dataclass
class Evaluation:
    value: bool
    fors: dict[str, ForState]  # every for node, by path
    # Every node's value, by the node's path (a for node's is where it sits, e.g.
    # "conditions.all[1]"; its runtime's node is the path of its body, "conditions.all[1].for").
    trace: dict[str, bool]

    def waiting(self) -> dict[str, datetime]:
        """The ``for`` nodes whose child holds but whose time has not come: path -> due."""
        return {p: s.due for p, s in self.fors.items() if s.status == "scheduled" and s.due}


def evaluate(
    tree: object,
    entities: Mapping[str, EntityView],
    since: Mapping[str, datetime | None],
    now: datetime,
) -> Evaluation:
    """Evaluate ``tree`` at ``now``; ``since`` holds each for node's previous ``since``.

    The empty tree (no conditions) holds.
    """
    result = Evaluation(True, {}, {ROOT_PATH: True})
    if tree != {}:
        result.value = _node(tree, ROOT_PATH, entities, since, now, result)
    return result


def _node(
    node: Any,
    path: str,
    entities: Mapping[str, EntityView],
    since: Mapping[str, datetime | None],
    now: datetime,
    out: Evaluation,
) -> bool:
    if "entity_id" in node:
        value = leaf_holds(node, entities.get(node["entity_id"]))
    else:
        (key,) = node
        body, child = node[key], f"{path}.{key}"
        if key in BRANCH_KEYS:
            values = [
                _node(c, f"{child}[{i}]", entities, since, now, out) for i, c in enumerate(body)
            ]
            value = all(values) if key == "all" else any(values)
        elif key == "not":
            value = not _node(body, child, entities, since, now, out)
        else:
            inner = _node(body["condition"], f"{child}.condition", entities, since, now, out)
            value = _for(child, float(body["seconds"]), inner, since.get(child), now, out)
    out.trace[path] = value
    return value


def _for(
    path: str,
    seconds: float,
    inner: bool,
    previous: datetime | None,
    now: datetime,
    out: Evaluation,
) -> bool:
    if not inner:
        out.fors[path] = ForState(seconds)
        return False
    started = previous if previous is not None and previous <= now else now
    holding = now >= started + timedelta(seconds=seconds)
    out.fors[path] = ForState(seconds, started, holding)
    return holding


def leaf_holds(leaf: Mapping[str, Any], entity: EntityView | None) -> bool:
    """Whether one leaf holds for ``entity`` (None: unknown entity)."""
    if entity is None:
        return False
    if "attribute" in leaf:
        value = entity.attributes.get(leaf["attribute"], _MISSING)
        if value is _MISSING:
            return False
    else:
        value = entity.state
    return all(_operator(op, value, leaf[op]) for op in _OPERATORS if op in leaf)


def _operator(operator: str, value: Any, operand: Any) -> bool:
    if operator == "equals":
        return same(value, operand)
    if operator == "not_equals":
        return not same(value, operand)
    if operator == "in":
        return any(same(value, item) for item in operand)
    if operator == "not_in":
        return not any(same(value, item) for item in operand)
    number = _number(value)
    if number is None:
        return False
    return bool(number > operand if operator == "above" else number < operand)


_OPERATORS = tuple(sorted(LEAF_OPERATORS))  # checked in a fixed order; all are pure


def same(value: Any, operand: Any) -> bool:
    """Equality of a reported value and a rule's operand, as the module docstring says."""
    if operand is None or value is None:
        return operand is None and value is None
    if isinstance(operand, bool):
        return _truth(value) is operand
    if isinstance(operand, int | float):
        number = _number(value)
        return number is not None and number == operand
    if isinstance(value, bool):
        return _truth(operand) is value
    if isinstance(value, int | float):
        number = _number(operand)
        return number is not None and number == value
    return str(value) == str(operand)


def _truth(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return bool(value) if value in (0, 1) else None
    text = str(value).strip().lower()
    return True if text in _TRUE else False if text in _FALSE else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    try:
        number = float(str(value).strip())
    except ValueError:
        return None
    return number if math.isfinite(number) else None
