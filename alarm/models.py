"""The alarm's durable state: entities the integrations report, rules, and what happened."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.utils import timezone

from alarm.conditions import (
    ENTITY_ID_MAX_LENGTH,
    ConditionError,
    domain_of,
    entity_id_problem,
    referenced_entity_ids,
)


def validate_entity_id(value: object) -> None:
    if problem := entity_id_problem(value):
        raise ValidationError(problem, code="invalid_entity_id")


class Entity(models.Model):
    """One thing an integration reports the state of: a sensor, a lock, a camera, ..."""

    class Source(models.TextChoices):
        HOME_ASSISTANT = "home_assistant", "Home Assistant"
        MQTT = "mqtt", "MQTT"
        ZIGBEE2MQTT = "zigbee2mqtt", "Zigbee2MQTT"
        ZWAVEJS = "zwavejs", "Z-Wave JS"
        FRIGATE = "frigate", "Frigate"
        MANUAL = "manual", "Manual"

    entity_id = models.CharField(
        max_length=ENTITY_ID_MAX_LENGTH, unique=True, validators=[validate_entity_id]
    )
    # Derived from entity_id in save(); stored so the admin and queries can filter on it.
    domain = models.CharField(max_length=ENTITY_ID_MAX_LENGTH, db_index=True, editable=False)
    name = models.CharField(max_length=255, blank=True)
    state = models.CharField(max_length=255, blank=True)
    attributes = models.JSONField(default=dict, blank=True)
    last_changed = models.DateTimeField(
        null=True, blank=True, help_text="When the state last took a different value."
    )
    last_seen = models.DateTimeField(
        null=True, blank=True, help_text="When an integration last reported this entity."
    )
    source = models.CharField(max_length=32, choices=Source.choices, default=Source.MANUAL)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["entity_id"]
        verbose_name_plural = "entities"

    def __str__(self) -> str:
        return self.entity_id

    def save(self, *args: Any, **kwargs: Any) -> None:
        # A malformed entity_id has no domain: refuse it here too, not only in forms.
        try:
            self.domain = domain_of(self.entity_id)
        except ValueError as exc:
            raise ValidationError({"entity_id": str(exc)}) from None
        update_fields = kwargs.get("update_fields")
        if update_fields is not None and "entity_id" in update_fields:
            kwargs["update_fields"] = {*update_fields, "domain"}
        super().save(*args, **kwargs)


class AlarmEvent(models.Model):
    """One line of the alarm's history. Deleted by ``cleanup_old_events`` after retention."""

    class EventType(models.TextChoices):
        ARMING = "arming"
        ARMED = "armed"
        DISARMED = "disarmed"
        PENDING = "pending"
        TRIGGERED = "triggered"
        STATE_CHANGED = "state_changed"
        SENSOR_TRIGGERED = "sensor_triggered"
        CODE_USED = "code_used"
        FAILED_CODE = "failed_code"
        INTEGRATION_OFFLINE = "integration_offline"
        INTEGRATION_RECOVERED = "integration_recovered"
        RULE_FIRED = "rule_fired"

    event_type = models.CharField(max_length=32, choices=EventType.choices)
    state_from = models.CharField(max_length=32, blank=True)
    state_to = models.CharField(max_length=32, blank=True)
    entity = models.ForeignKey(
        Entity, null=True, blank=True, on_delete=models.SET_NULL, related_name="events"
    )
    message = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True)
    # Indexed: the cleanup deletes by it and the history is read newest first.
    timestamp = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-timestamp"]

    def __str__(self) -> str:
        return f"{self.event_type} @ {self.timestamp:%Y-%m-%d %H:%M:%S}"


class Rule(models.Model):
    """When ``conditions`` hold, run ``actions``; at most once per ``cooldown_seconds``."""

    name = models.CharField(max_length=200)
    enabled = models.BooleanField(default=True)
    conditions = models.JSONField(
        default=dict, blank=True, help_text="A condition tree; {} means no conditions."
    )
    actions = models.JSONField(default=list, blank=True)
    cooldown_seconds = models.PositiveIntegerField(default=0)
    priority = models.IntegerField(default=0, help_text="Higher priorities are evaluated first.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-priority", "name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if not isinstance(self.actions, list):
            errors["actions"] = f"actions must be a list, got {type(self.actions).__name__}"
        if not isinstance(self.conditions, dict):
            errors["conditions"] = (
                f"conditions must be a dict, got {type(self.conditions).__name__}"
            )
        else:
            try:
                referenced_entity_ids(self.conditions)
            except ConditionError as exc:
                errors["conditions"] = str(exc)
        if errors:
            raise ValidationError(errors)

    def save(self, *args: Any, **kwargs: Any) -> None:
        # Parse before writing: a tree we cannot read would leave the refs wrong.
        try:
            entity_ids = referenced_entity_ids(self.conditions)
        except ConditionError as exc:
            raise ValidationError({"conditions": str(exc)}) from None
        with transaction.atomic():
            super().save(*args, **kwargs)
            sync_entity_refs(self, entity_ids)


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
