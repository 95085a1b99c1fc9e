"""Entities the integrations report, and the alarm's history."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from alarm.conditions import ENTITY_ID_MAX_LENGTH, domain_of, entity_id_problem


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
