"""Rule condition trees: their shape and the entity ids they reference. Pure: no Django.

A tree is nested dicts:

- ``{"all": [node, ...]}`` / ``{"any": [node, ...]}`` - every / at least one child holds;
- ``{"not": node}`` - the child does not hold;
- ``{"for": {"seconds": N, "condition": node}}`` - the child has held for N seconds;
- a leaf ``{"entity_id": "binary_sensor.door", "equals": "on"}`` - one entity compared with
  one or more operators, optionally on an ``attribute`` instead of the state.

The empty dict at the root means "no conditions". Anything else that does not fit raises a
``ConditionError`` whose message starts with the path of the offending node, e.g.
``conditions.all[2]: unknown node keys ['foo']``, so an operator can find it in a large tree.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

ROOT_PATH = "conditions"

# Home Assistant's shape: lowercase letters, digits and underscores on both sides of one dot.
# Other integrations map their names onto it, so one rule can reference any of them.
ENTITY_ID_PATTERN = re.compile(r"^[a-z0-9_]+\.[a-z0-9_]+$")
ENTITY_ID_MAX_LENGTH = 255

BRANCH_KEYS = ("all", "any")
COMBINATOR_KEYS = (*BRANCH_KEYS, "not", "for")
LEAF_OPERATORS = frozenset({"equals", "not_equals", "in", "not_in", "above", "below"})
LEAF_KEYS = frozenset({"entity_id", "attribute"}) | LEAF_OPERATORS
FOR_KEYS = frozenset({"seconds", "condition"})
MAX_FOR_SECONDS = 7 * 24 * 3600  # a week; also keeps NaN and infinity out


class ConditionError(ValueError):
    """A condition tree has a shape this module does not understand."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


def entity_id_problem(entity_id: object) -> str | None:
    """Why ``entity_id`` is not a valid ``domain.object_id``, or None when it is."""
    if not isinstance(entity_id, str):
        return f"entity_id must be a string, got {type(entity_id).__name__}"
    if len(entity_id) > ENTITY_ID_MAX_LENGTH:
        return f"entity_id is longer than {ENTITY_ID_MAX_LENGTH} characters"
    if not ENTITY_ID_PATTERN.match(entity_id):
        return (
            f"entity_id {entity_id!r} must look like domain.object_id "
            "(lowercase letters, digits and underscores, one dot)"
        )
    return None


def domain_of(entity_id: str) -> str:
    """The part before the dot: ``binary_sensor`` for ``binary_sensor.front_door``."""
    problem = entity_id_problem(entity_id)
    if problem:
        raise ValueError(problem)
    return entity_id.split(".", 1)[0]


def for_nodes(tree: object, path: str = ROOT_PATH) -> dict[str, float]:
    """The path and seconds of every ``for`` node, e.g. ``{"conditions.all[1].for": 30}``.

    Raises ConditionError on a bad shape.
    """
    found: dict[str, float] = {}
    if tree != {}:
        for _ in iter_leaf_paths(tree, path, found):
            pass
    return found


def referenced_entity_ids(tree: object, path: str = ROOT_PATH) -> set[str]:
    """Every entity id the tree's leaves reference. Raises ConditionError on a bad shape."""
    if tree == {}:
        return set()
    return {leaf["entity_id"] for leaf in iter_leaves(tree, path)}


def iter_leaves(node: object, path: str = ROOT_PATH) -> Iterator[dict[str, Any]]:
    """Walk the tree depth-first, checking each node's shape, and yield its leaves."""
    for _, leaf in iter_leaf_paths(node, path):
        yield leaf


def iter_leaf_paths(
    node: object, path: str = ROOT_PATH, fors: dict[str, float] | None = None
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Like ``iter_leaves``, yielding ``(path, leaf)``.

    ``fors``, when given, collects the path and seconds of every ``for`` node on the way.
    """
    if not isinstance(node, dict):
        raise ConditionError(path, f"expected a dict node, got {type(node).__name__}")
    if "entity_id" in node:
        _check_leaf(node, path)
        yield path, node
        return
    key = _combinator_key(node, path)
    child_path = f"{path}.{key}"
    body = node[key]
    if key in BRANCH_KEYS:
        yield from _iter_branch(body, child_path, fors)
    elif key == "not":
        yield from iter_leaf_paths(body, child_path, fors)
    else:
        condition = _for_condition(body, child_path)
        if fors is not None:
            fors[child_path] = body["seconds"]
        yield from iter_leaf_paths(condition, f"{child_path}.condition", fors)


def _combinator_key(node: dict[str, Any], path: str) -> str:
    keys = sorted(node)
    if not keys:
        raise ConditionError(path, "empty node")
    found = [k for k in keys if k in COMBINATOR_KEYS]
    unknown = [k for k in keys if k not in COMBINATOR_KEYS]
    if unknown:
        raise ConditionError(path, f"unknown node keys {unknown}")
    if len(found) > 1:
        raise ConditionError(path, f"a node has exactly one of {list(COMBINATOR_KEYS)}: {found}")
    return found[0]


def _iter_branch(
    children: object, path: str, fors: dict[str, float] | None
) -> Iterator[tuple[str, dict[str, Any]]]:
    if not isinstance(children, list) or not children:
        raise ConditionError(path, "expected a non-empty list of nodes")
    for index, child in enumerate(children):
        yield from iter_leaf_paths(child, f"{path}[{index}]", fors)


def _for_condition(body: object, path: str) -> object:
    if not isinstance(body, dict):
        raise ConditionError(path, 'expected {"seconds": N, "condition": node}')
    if missing := sorted(FOR_KEYS - set(body)):
        raise ConditionError(path, f"missing keys {missing}")
    if unknown := sorted(set(body) - FOR_KEYS):
        raise ConditionError(path, f"unknown keys {unknown}")
    seconds = body["seconds"]
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int | float)
        or not 0 <= seconds <= MAX_FOR_SECONDS
    ):
        raise ConditionError(
            f"{path}.seconds", f"expected a number from 0 to {MAX_FOR_SECONDS}, got {seconds!r}"
        )
    return body["condition"]


def _check_leaf(leaf: dict[str, Any], path: str) -> None:
    if unknown := sorted(set(leaf) - LEAF_KEYS):
        raise ConditionError(path, f"unknown leaf keys {unknown}")
    if problem := entity_id_problem(leaf["entity_id"]):
        raise ConditionError(f"{path}.entity_id", problem)
    if not LEAF_OPERATORS & set(leaf):
        raise ConditionError(path, f"a leaf needs one of {sorted(LEAF_OPERATORS)}")
    if "attribute" in leaf and not (isinstance(leaf["attribute"], str) and leaf["attribute"]):
        raise ConditionError(f"{path}.attribute", "expected a non-empty string")
    for operator in sorted(LEAF_OPERATORS & set(leaf)):
        if problem := _operand_problem(operator, leaf[operator]):
            raise ConditionError(f"{path}.{operator}", problem)


def _is_scalar(value: object) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _operand_problem(operator: str, operand: object) -> str | None:
    """Why ``operand`` does not fit ``operator``, or None when it does."""
    if operator in ("above", "below"):
        if isinstance(operand, bool) or not isinstance(operand, int | float):
            return f"expected a number, got {operand!r}"
    elif operator in ("in", "not_in"):
        if not isinstance(operand, list) or not operand:
            return f"expected a non-empty list of values, got {operand!r}"
        if not all(_is_scalar(item) for item in operand):
            return "expected a list of text, numbers, true/false or null"
    elif not _is_scalar(operand):
        return f"expected text, a number, true/false or null, got {type(operand).__name__}"
    return None
