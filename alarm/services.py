"""The doors other code calls into the alarm.

- ``update_entity_state`` / ``aupdate_entity_state``: the one way entity states change. Only
  a real change (a new state, new attributes, or a new entity) is written; it then evaluates
  the rules that reference the entity (through RuleEntityRef, never a scan of all rules) in
  the same transaction and, on commit, sends ``entity_state_changed``.
- ``alarm_state_snapshot()``: the panel's state as a JSON-able dict, one query.
- ``arm``, ``disarm``, ``trip``, ``trigger``: panel commands (``alarm.panel``).
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

from asgiref.sync import sync_to_async
from django.db import transaction
from django.utils import timezone

from alarm import panel, rule_engine, signals
from alarm.conditions import entity_id_problem
from alarm.models import Entity

logger = logging.getLogger(__name__)

SOURCES = frozenset(Entity.Source.values)
TEXT_MAX_LENGTH = 255

arm = panel.arm
disarm = panel.disarm
trip = panel.trip
trigger = panel.trigger


def alarm_state_snapshot() -> dict[str, Any]:
    """``{"state", "previous_state", "changed_at", "delay": {...} | None}``; one query."""
    return panel.snapshot()


def update_entity_state(
    entity_id: str,
    state: str,
    attributes: dict[str, Any] | None = None,
    *,
    source: str,
    name: str | None = None,
    at: datetime | None = None,
) -> bool:
    """Record a reported state; True when something really changed (state or attributes).

    ``attributes=None`` and ``name=None`` mean "not reported": the stored ones stay. ``at`` is
    when the state was observed (default now); it is the entity's ``last_changed`` and the
    instant rules are evaluated at (a ``for`` node counts from it). An unknown entity is
    created. A report that changes nothing costs one query and writes nothing; one that
    changes only the name or source updates them without evaluating rules. Bad arguments
    raise ValueError before anything is written.
    """
    _check(entity_id, state, attributes, source, name, at)
    now = at or timezone.now()
    stored = (
        Entity.objects.filter(entity_id=entity_id)
        .values_list("state", "attributes", "name", "source")
        .first()
    )
    if stored is not None and not _differs(stored, state, attributes, name, source):
        return False
    with transaction.atomic():
        entity, created = Entity.objects.select_for_update().get_or_create(
            entity_id=entity_id,
            defaults={
                "state": state,
                "attributes": attributes or {},
                "name": name or "",
                "source": source,
                "last_changed": now,
                "last_seen": now,
            },
        )
        changed = created or _apply(entity, state, attributes, name, source, now)
        if not changed:
            return False
        rules = rule_engine.evaluate_for_entity(entity_id, now)
        payload = entity_payload(entity)
        transaction.on_commit(
            lambda: signals.entity_state_changed.send(sender=Entity, entity=payload),
            robust=True,  # a failing receiver is logged, never the caller's error
        )
    logger.debug(
        "entity state changed",
        extra={"event": "alarm.entity_changed", "entity_id": entity_id, "rules": rules},
    )
    return True


async def aupdate_entity_state(
    entity_id: str,
    state: str,
    attributes: dict[str, Any] | None = None,
    *,
    source: str,
    name: str | None = None,
    at: datetime | None = None,
) -> bool:
    """``update_entity_state`` for async code (the integrations' ``on_state``)."""
    return await sync_to_async(update_entity_state)(
        entity_id, state, attributes, source=source, name=name, at=at
    )


def entity_payload(entity: Entity) -> dict[str, Any]:
    """The ``entity`` dict of ``entity_state_changed``."""
    return {
        "entity_id": entity.entity_id,
        "domain": entity.domain,
        "name": entity.name,
        "state": entity.state,
        "attributes": entity.attributes,
        "last_changed": entity.last_changed.isoformat() if entity.last_changed else None,
        "source": entity.source,
    }


def _differs(
    stored: tuple[str, Any, str, str],
    state: str,
    attributes: dict[str, Any] | None,
    name: str | None,
    source: str,
) -> bool:
    old_state, old_attributes, old_name, old_source = stored
    return (
        old_state != state
        or (attributes is not None and old_attributes != attributes)
        or (name is not None and old_name != name)
        or old_source != source
    )


def _apply(
    entity: Entity,
    state: str,
    attributes: dict[str, Any] | None,
    name: str | None,
    source: str,
    now: datetime,
) -> bool:
    """Write what differs (under the row lock); True when state or attributes changed."""
    changed_state = entity.state != state
    changed = changed_state or (attributes is not None and entity.attributes != attributes)
    fields = []
    if changed_state:
        entity.state, entity.last_changed = state, now
        fields += ["state", "last_changed"]
    if attributes is not None and entity.attributes != attributes:
        entity.attributes = attributes
        fields.append("attributes")
    if name is not None and entity.name != name:
        entity.name = name
        fields.append("name")
    if entity.source != source:
        entity.source = source
        fields.append("source")
    if fields:
        entity.last_seen = now
        entity.save(update_fields=[*fields, "last_seen", "updated_at"])
    return changed


def _check(
    entity_id: object,
    state: object,
    attributes: object,
    source: object,
    name: object,
    at: object,
) -> None:
    if problem := entity_id_problem(entity_id):
        raise ValueError(problem)
    if not isinstance(state, str) or len(state) > TEXT_MAX_LENGTH:
        raise ValueError(f"state must be text of at most {TEXT_MAX_LENGTH} characters")
    if attributes is not None:
        if not isinstance(attributes, dict):
            raise ValueError(f"attributes must be a dict, got {type(attributes).__name__}")
        try:
            json.dumps(attributes)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"attributes must be JSON-serializable: {exc}") from None
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; known: {', '.join(sorted(SOURCES))}")
    if name is not None and (not isinstance(name, str) or len(name) > TEXT_MAX_LENGTH):
        raise ValueError(f"name must be text of at most {TEXT_MAX_LENGTH} characters")
    if at is not None and (not isinstance(at, datetime) or timezone.is_naive(at)):
        raise ValueError(f"at must be a timezone-aware datetime, got {at!r}")
