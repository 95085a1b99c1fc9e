"""Daily maintenance of the alarm's tables: history retention and stale rule-entity refs."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from alarm.conditions import ConditionError, referenced_entity_ids
from alarm.models import AlarmEvent, PendingAction, Rule, RuleActionLog, RuleEntityRef
from alarm.settings import (
    ALARM_EVENTS_RETENTION,
    PENDING_ACTIONS_RETENTION,
    RULE_ACTION_LOGS_RETENTION,
)
from services.registry import task
from services.schedules import DailyAt
from services.tasks import (
    MAINTENANCE_TAGS,
    cleanup_done,
    delete_in_batches,
    delete_older_than,
    resolve_slot,
)


@task(DailyAt(3, 0), tags=MAINTENANCE_TAGS, retries=2, timeout=600)
def cleanup_old_events(slot: datetime | None = None) -> dict[str, Any]:
    """Delete alarm events older than the retention (retention.alarm_events_days)."""
    return delete_older_than(
        "cleanup_old_events",
        ALARM_EVENTS_RETENTION.key,
        AlarmEvent.objects.all(),
        "timestamp",
        resolve_slot(slot),
    )


@task(DailyAt(3, 30), tags=MAINTENANCE_TAGS, retries=2, timeout=600)
def cleanup_rule_action_logs(slot: datetime | None = None) -> dict[str, Any]:
    """Delete rule action logs older than the retention (retention.rule_action_logs_days)."""
    return delete_older_than(
        "cleanup_rule_action_logs",
        RULE_ACTION_LOGS_RETENTION.key,
        RuleActionLog.objects.all(),
        "fired_at",
        resolve_slot(slot),
    )


@task(DailyAt(3, 35), tags=MAINTENANCE_TAGS, retries=2, timeout=600)
def cleanup_finished_pending_actions(slot: datetime | None = None) -> dict[str, Any]:
    """Delete finished pending actions older than the retention (retention.pending_actions_days).

    Only rows that fired, failed or were cancelled, by when they finished: a scheduled one is
    a live timer, however old.
    """
    return delete_older_than(
        "cleanup_finished_pending_actions",
        PENDING_ACTIONS_RETENTION.key,
        PendingAction.objects.exclude(status=PendingAction.Status.SCHEDULED),
        "finished_at",
        resolve_slot(slot),
    )


@task(DailyAt(4, 30), tags=MAINTENANCE_TAGS, retries=2, timeout=600)
def cleanup_orphan_rule_entity_refs(slot: datetime | None = None) -> dict[str, Any]:
    """Delete rule-entity refs that their rule's condition tree no longer references.

    Rule.save() keeps refs in step; this catches edits that bypassed it (``.update()``, SQL).
    A rule whose tree does not parse keeps its refs: dropping them would silence the rule
    until someone repairs it, which is worse than waking it for a stale entity.
    """
    resolve_slot(slot)  # Refs have no age; the slot is only checked for a clear error.
    refs_by_rule: dict[int, dict[str, int]] = defaultdict(dict)
    for ref_pk, rule_id, entity_id in RuleEntityRef.objects.values_list(
        "pk", "rule_id", "entity_id"
    ).iterator():
        refs_by_rule[rule_id][entity_id] = ref_pk
    orphan_pks: list[int] = []
    unparseable_rules = 0
    rules = Rule.objects.filter(pk__in=list(refs_by_rule)).values_list("pk", "conditions")
    for rule_id, conditions in rules.iterator():
        try:
            wanted = referenced_entity_ids(conditions)
        except ConditionError:
            unparseable_rules += 1
            continue
        refs = refs_by_rule[rule_id]
        orphan_pks += [ref_pk for entity_id, ref_pk in refs.items() if entity_id not in wanted]
    deleted = delete_in_batches(RuleEntityRef.objects.filter(pk__in=orphan_pks))
    return cleanup_done(
        "cleanup_orphan_rule_entity_refs",
        deleted,
        rules_checked=len(refs_by_rule),
        unparseable_rules=unparseable_rules,
    )
