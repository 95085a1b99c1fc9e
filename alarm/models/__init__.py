"""The alarm's durable state: entities the integrations report, rules and their timers, the
panel's state and settings, and what happened."""

from __future__ import annotations

from alarm.models.entities import AlarmEvent, Entity, validate_entity_id
from alarm.models.panel import AlarmSettings, AlarmState
from alarm.models.rules import Rule, RuleActionLog, RuleEntityRef, sync_entity_refs
from alarm.models.runtime import PendingAction, RuleRuntime

__all__ = [
    "AlarmEvent",
    "AlarmSettings",
    "AlarmState",
    "Entity",
    "PendingAction",
    "Rule",
    "RuleActionLog",
    "RuleEntityRef",
    "RuleRuntime",
    "sync_entity_refs",
    "validate_entity_id",
]
