"""Rules in motion: evaluate the rules an entity change concerns, keep their runtimes, fire.

ORM code, called inside the caller's transaction (``update_entity_state``, ``Rule.save``, the
worker's timers). Concurrent evaluations of one rule (a state change in the web process, its
``for`` timer in the worker) are serialised by locking the rule's row first, always in id
order, so they neither interleave nor deadlock.

A rule fires on a rising edge: when its tree goes from not holding to holding (the root's
runtime remembers which), at most once per cooldown. Firing runs the immediate actions in the
same transaction, schedules the delayed ones as pending actions and writes one RuleActionLog
row with the trace. A ``for`` node whose child starts to hold gets a runtime row ``scheduled``
at since + seconds; the database trigger on that table puts it on the worker's heap within
milliseconds; when it comes due the worker calls ``fire_runtime``, which re-checks the rule.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from alarm import timer_policy
from alarm.action_runner import run_actions
from alarm.conditions import for_nodes, referenced_entity_ids
from alarm.evaluation import EntityView, Evaluation, evaluate
from alarm.models import (
    Entity,
    PendingAction,
    Rule,
    RuleActionLog,
    RuleEntityRef,
    RuleRuntime,
)
from alarm.models.runtime import ROOT_NODE

logger = logging.getLogger(__name__)

Definition = tuple[Any, bool]  # (conditions, enabled)
_RUNTIME_FIELDS = ["status", "since", "scheduled_for", "fired_at", "updated_at"]


def lock_definition(rule_id: int) -> Definition | None:
    """Lock a rule's row and return its stored (conditions, enabled), or None if it is new."""
    row = Rule.objects.select_for_update().filter(pk=rule_id).values_list("conditions", "enabled")
    found = row.first()
    return None if found is None else (found[0], found[1])


def rule_saved(rule: Rule, before: Definition | None, now: datetime) -> None:
    """After a save: a new tree or an enable/disable starts the rule's memory afresh.

    The baseline evaluation starts the ``for`` nodes whose child holds now (their timers count
    from the save) and records whether the tree holds, without running actions: a rule fires
    on the next rising edge, not because it was saved while its tree held. Disabling cancels
    its scheduled pending actions.
    """
    if before == (rule.conditions, rule.enabled):
        return
    RuleRuntime.objects.filter(rule=rule).delete()  # the trigger cancels scheduled timers
    if not rule.enabled:
        cancel_pending(PendingAction.objects.filter(rule=rule), "rule disabled", now)
        return
    _evaluate([rule], now, source=RuleActionLog.Source.EVENT, baseline=True)


def cancel_pending(queryset: Any, reason: str, now: datetime) -> int:
    """Cancel the scheduled pending actions of ``queryset``; returns how many."""
    return int(
        queryset.filter(status=PendingAction.Status.SCHEDULED).update(
            status=PendingAction.Status.CANCELLED, reason=reason[:200], finished_at=now
        )
    )


def evaluate_for_entity(entity_id: str, now: datetime) -> int:
    """Evaluate the enabled rules that reference ``entity_id`` (via refs); returns how many."""
    refs = RuleEntityRef.objects.filter(entity_id=entity_id).values("rule_id")
    rules = list(Rule.objects.select_for_update().filter(pk__in=refs, enabled=True).order_by("pk"))
    if rules:
        _evaluate(rules, now, source=RuleActionLog.Source.EVENT, cause={"entity_id": entity_id})
    return len(rules)


def fire_runtime(runtime_id: int, due: datetime, now: datetime, late: float = 0.0) -> str:
    """The worker's ``runtime`` timer came due: re-check the rule. Returns what happened.

    ``due`` is the time the worker waited for; the row is taken only if it is still scheduled
    no later than that (a row moved later was rescheduled and is fired then, by its NOTIFY).
    ``late``: seconds past the deadline by elapsed time (the stale policy's measure).
    """
    with transaction.atomic():
        rule_id = (
            RuleRuntime.objects.filter(pk=runtime_id, status=RuleRuntime.Status.SCHEDULED)
            .values_list("rule_id", flat=True)
            .first()
        )
        rule = Rule.objects.select_for_update().filter(pk=rule_id).first() if rule_id else None
        runtime = (
            RuleRuntime.objects.filter(
                pk=runtime_id, status=RuleRuntime.Status.SCHEDULED, scheduled_for__lte=due
            ).first()
            if rule
            else None
        )
        if rule is None or runtime is None:
            return "gone"
        seconds = for_nodes(rule.conditions).get(runtime.node)
        if not rule.enabled or seconds is None:
            runtime.delete()
            return "gone"
        if timer_policy.verdict(timer_policy.RUNTIME, late) == "restart":
            # Entity states may be stale after a downtime: count the wait again from now.
            runtime.since, runtime.scheduled_for = now, now + timedelta(seconds=seconds)
            runtime.save(update_fields=["since", "scheduled_for", "updated_at"])
            logger.info(
                "rule timer restarted after downtime",
                extra={"event": "alarm.runtime_restarted", "rule": rule.pk, "late": late},
            )
            return "restarted"
        # By elapsed time the wait is over, even if the wall clock was stepped back.
        fired = _evaluate(
            [rule], max(now, due), source=RuleActionLog.Source.TIMER, cause={"node": runtime.node}
        )
        return "fired" if fired else "checked"


def _evaluate(
    rules: list[Rule],
    now: datetime,
    *,
    source: str,
    baseline: bool = False,
    cause: dict[str, Any] | None = None,
) -> int:
    """Evaluate ``rules`` (locked by the caller) at ``now``; returns how many fired."""
    source = str(source)  # a TextChoices member logs as its value
    runtimes = _runtimes_of(rules)
    entities = _entity_views(rules)
    changed: list[RuleRuntime] = []
    fired = 0
    for rule in sorted(rules, key=lambda r: (-r.priority, r.name, r.pk)):
        mine = runtimes.get(rule.pk, {})
        since = {node: rt.since for node, rt in mine.items() if rt.status != "idle"}
        result = evaluate(rule.conditions, entities, since, now)
        changed += _for_rows(rule, result, mine)
        root = mine.get(ROOT_NODE) or RuleRuntime(rule=rule, node=ROOT_NODE)
        was_holding = root.status == RuleRuntime.Status.HOLDING
        if result.value and not was_holding and not baseline and _cooled_down(rule, root, now):
            _fire(rule, result, now, source, cause or {})
            root.fired_at = now
            fired += 1
        if result.value != was_holding:
            root.status = "holding" if result.value else "idle"
            root.since = (root.since if was_holding else now) if result.value else None
            changed.append(root)
    if changed:
        RuleRuntime.objects.bulk_create(
            changed,
            update_conflicts=True,
            unique_fields=["rule", "node"],
            update_fields=_RUNTIME_FIELDS,
        )
    return fired


def _runtimes_of(rules: Iterable[Rule]) -> dict[int, dict[str, RuleRuntime]]:
    found: dict[int, dict[str, RuleRuntime]] = {}
    for runtime in RuleRuntime.objects.filter(rule__in=[r.pk for r in rules]):
        found.setdefault(runtime.rule_id, {})[runtime.node] = runtime
    return found


def _entity_views(rules: Iterable[Rule]) -> dict[str, EntityView]:
    wanted: set[str] = set()
    for rule in rules:
        wanted |= referenced_entity_ids(rule.conditions)
    rows = Entity.objects.filter(entity_id__in=wanted).values_list(
        "entity_id", "state", "attributes"
    )
    return {eid: EntityView(state, attributes or {}) for eid, state, attributes in rows}


def _for_rows(rule: Rule, result: Evaluation, mine: dict[str, RuleRuntime]) -> list[RuleRuntime]:
    """The runtime rows of ``rule``'s for nodes whose state differs from what is stored."""
    rows = []
    for node, state in result.fors.items():
        scheduled_for = state.due  # None exactly while idle
        stored = mine.get(node)
        if stored is not None and (stored.status, stored.since, stored.scheduled_for) == (
            state.status, state.since, scheduled_for,
        ):  # fmt: skip
            continue
        row = stored or RuleRuntime(rule=rule, node=node)
        row.status, row.since, row.scheduled_for = state.status, state.since, scheduled_for
        rows.append(row)
    return rows


def _cooled_down(rule: Rule, root: RuleRuntime, now: datetime) -> bool:
    if not rule.cooldown_seconds or root.fired_at is None:
        return True
    if now - root.fired_at >= timedelta(seconds=rule.cooldown_seconds):
        return True
    logger.info(
        "rule held again within its cooldown",
        extra={"event": "alarm.rule_cooldown", "rule": rule.pk},
    )
    return False


def _fire(
    rule: Rule, result: Evaluation, now: datetime, source: str, cause: dict[str, Any]
) -> None:
    results, errors = run_actions(rule, rule.actions, now, source=source)
    RuleActionLog.objects.create(
        rule=rule,
        rule_name=rule.name,
        fired_at=now,
        source=source,
        trace={**cause, "value": result.value, "nodes": result.trace},
        actions=rule.actions,
        result={"actions": results},
        error="; ".join(errors),
    )
    extra = {"event": "alarm.rule_fired", "rule": rule.pk, "source": source, **cause}
    # Logged once it is true: after the commit that records it.
    transaction.on_commit(lambda: logger.info("rule fired", extra=extra), robust=True)


def cancel_for_deleted_rule(rule_id: int) -> int:
    """Before a rule is deleted: its scheduled pending actions are cancelled, not orphaned."""
    pending = PendingAction.objects.filter(Q(rule_id=rule_id))
    return cancel_pending(pending, "rule deleted", timezone.now())
