"""Rules, the entity ids they look at, and the log of their firings."""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator
from django.db import models, transaction
from django.utils import timezone

from alarm.actions import action_errors, provider_names
from alarm.conditions import (
    ENTITY_ID_MAX_LENGTH,
    ConditionError,
    iter_leaf_paths,
    referenced_entity_ids,
)

MAX_COOLDOWN = 7 * 24 * 3600


class Rule(models.Model):
    """When ``conditions`` become true, run ``actions``; at most once per ``cooldown_seconds``.

    Validated on every save (the admin shows the errors per field; code gets a
    ValidationError) and written in one transaction with its entity refs and the reset of its
    runtimes: a rule is never half-saved.

    **Unknown entity ids are refused.** "Unknown" means no ``Entity`` row has that id: no
    integration has reported it and nobody declared it. A typo in an alarm rule must not yield
    a rule that silently never fires. A rule may still name a device before the device
    reports: declare the entity first (admin, Entities, source "Manual"); the integration's
    first report then updates that row. Refs stay strings (not foreign keys): deleting an
    entity later leaves its rules working for when it comes back, and saving such a rule again
    (disabling it, say) is not refused for the ids it already named. Likewise a ``notify``
    action naming a provider that does not exist is refused.
    """

    name = models.CharField(max_length=200)
    enabled = models.BooleanField(default=True)
    conditions = models.JSONField(
        default=dict, blank=True, help_text="A condition tree; {} means no conditions."
    )
    actions = models.JSONField(default=list, blank=True)
    cooldown_seconds = models.PositiveIntegerField(
        default=0,
        validators=[MaxValueValidator(MAX_COOLDOWN)],
        help_text="After firing, the rule does not fire again for this many seconds.",
    )
    priority = models.IntegerField(default=0, help_text="Higher priorities are evaluated first.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-priority", "name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        errors = self.definition_errors()
        if errors:
            raise ValidationError(errors)

    def definition_errors(self) -> dict[str, list[str]]:
        """Problems of conditions, actions and cooldown, by field; empty when valid."""
        errors: dict[str, list[str]] = {}
        if problems := _condition_problems(self.conditions, self.pk):
            errors["conditions"] = problems
        if problems := _action_problems(self.actions):
            errors["actions"] = problems
        cooldown = self.cooldown_seconds
        if isinstance(cooldown, bool) or not isinstance(cooldown, int):
            errors["cooldown_seconds"] = [f"expected a whole number, got {cooldown!r}"]
        elif not 0 <= cooldown <= MAX_COOLDOWN:
            errors["cooldown_seconds"] = [f"expected 0 to {MAX_COOLDOWN} seconds, got {cooldown}"]
        return errors

    def save(self, *args: Any, **kwargs: Any) -> None:
        # Validate before writing anything: nothing half-saved.
        self.clean()
        entity_ids = referenced_entity_ids(self.conditions)
        from alarm import rule_engine

        with transaction.atomic():
            before = rule_engine.lock_definition(self.pk) if self.pk else None
            super().save(*args, **kwargs)
            sync_entity_refs(self, entity_ids)
            rule_engine.rule_saved(self, before, timezone.now())


def _condition_problems(conditions: object, rule_id: int | None) -> list[str]:
    if not isinstance(conditions, dict):
        return [f"conditions must be a dict, got {type(conditions).__name__}"]
    if conditions == {}:
        return []
    try:
        leaves = list(iter_leaf_paths(conditions))
    except ConditionError as exc:
        return [str(exc)]
    wanted = {leaf["entity_id"] for _, leaf in leaves}
    from alarm.models.entities import Entity

    known = set(Entity.objects.filter(entity_id__in=wanted).values_list("entity_id", flat=True))
    if rule_id is not None and wanted - known:
        # Ids the stored rule already names stay valid (their entity may have been deleted
        # since): only a newly introduced id must be known.
        known |= set(
            RuleEntityRef.objects.filter(rule_id=rule_id, entity_id__in=wanted - known).values_list(
                "entity_id", flat=True
            )
        )
    return [
        f"{path}.entity_id: unknown entity {leaf['entity_id']!r}: no integration has reported "
        "it and it is not declared under Entities (declare it there, source Manual, to name a "
        "device before it reports)"
        for path, leaf in leaves
        if leaf["entity_id"] not in known
    ]


def _action_problems(actions: object) -> list[str]:
    problems = [str(error) for error in action_errors(actions)]
    if problems or not isinstance(actions, list) or not apps.is_installed("notifications"):
        return problems
    named = provider_names(actions)
    if not named:
        return []
    from notifications.models import NotificationProvider

    known = set(NotificationProvider.objects.filter(name__in=named).values_list("name", flat=True))
    return [
        f"actions[{index}].provider: unknown notification provider {action['provider']!r}"
        for index, action in enumerate(actions)
        if action.get("type") == "notify" and action.get("provider", None) in named - known
    ]


class RuleEntityRef(models.Model):
    """Which rules look at an entity: lets a state change wake only the rules it concerns.

    ``entity_id`` is a string, not a foreign key, because a rule may name an entity before
    any integration has reported it.
    """

    rule = models.ForeignKey(Rule, on_delete=models.CASCADE, related_name="entity_refs")
    entity_id = models.CharField(max_length=ENTITY_ID_MAX_LENGTH, db_index=True)

    class Meta:
        ordering = ["rule_id", "entity_id"]
        constraints = [
            models.UniqueConstraint(fields=["rule", "entity_id"], name="ruleentityref_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.rule_id} -> {self.entity_id}"


def sync_entity_refs(rule: Rule, entity_ids: set[str] | None = None) -> tuple[int, int]:
    """Make ``rule``'s refs equal to the entity ids its tree references.

    Returns ``(added, removed)``. Raises ConditionError when the tree does not parse and no
    ``entity_ids`` are given.
    """
    wanted = referenced_entity_ids(rule.conditions) if entity_ids is None else entity_ids
    existing = set(rule.entity_refs.values_list("entity_id", flat=True))
    stale = existing - wanted
    if stale:
        rule.entity_refs.filter(entity_id__in=stale).delete()
    missing = sorted(wanted - existing)
    # ignore_conflicts: two saves of the same rule racing must not fail on the unique pair.
    RuleEntityRef.objects.bulk_create(
        [RuleEntityRef(rule=rule, entity_id=entity_id) for entity_id in missing],
        ignore_conflicts=True,
    )
    return len(missing), len(stale)


class RuleActionLog(models.Model):
    """One firing of a rule: why (trace), what it did (actions, result) and any error."""

    class Source(models.TextChoices):
        EVENT = "event"
        TIMER = "timer"
        MANUAL = "manual"

    rule = models.ForeignKey(
        Rule, null=True, blank=True, on_delete=models.SET_NULL, related_name="action_logs"
    )
    # Copied from the rule so the log still says which rule fired after it is deleted.
    rule_name = models.CharField(max_length=200, blank=True)
    fired_at = models.DateTimeField(default=timezone.now, db_index=True)
    source = models.CharField(max_length=16, choices=Source.choices)
    trace = models.JSONField(default=dict, blank=True)
    actions = models.JSONField(default=list, blank=True)
    result = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-fired_at"]

    def __str__(self) -> str:
        return f"{self.rule_name or self.rule_id} @ {self.fired_at:%Y-%m-%d %H:%M:%S}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self.rule_name and self.rule is not None:
            self.rule_name = self.rule.name
        super().save(*args, **kwargs)
