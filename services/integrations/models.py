"""Each integration's configuration (one row per kind) and Frigate's stored detections.

A configuration row is optional: without one an integration takes its environment default
(MQTT: ``MQTT_URL``, or the embedded broker) or stays "not configured". A trigger (migration
0002) NOTIFYs ``integrations_config`` with the kind on every insert, update and delete, so an
edit in the admin, the shell or SQL restarts that integration's component, and only it.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import models

from notifications import crypto
from notifications.crypto import SecretError
from services.integrations.config_spec import KINDS, spec_for


class IntegrationConfig(models.Model):
    class Kind(models.TextChoices):
        MQTT = "mqtt", "MQTT"
        ZIGBEE2MQTT = "zigbee2mqtt", "Zigbee2MQTT"
        FRIGATE = "frigate", "Frigate"
        HOME_ASSISTANT = "home_assistant", "Home Assistant"
        ZWAVEJS = "zwavejs", "Z-Wave JS"

    kind = models.CharField(max_length=32, choices=Kind.choices, unique=True)
    enabled = models.BooleanField(default=True)
    # Field -> value; the kind's secret fields are stored encrypted (notifications.crypto).
    settings = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["kind"]
        verbose_name = "integration configuration"

    def __str__(self) -> str:
        return f"{self.get_kind_display()} ({'enabled' if self.enabled else 'disabled'})"

    def clean(self) -> None:
        """Validate ``settings`` for the kind; errors read "settings.url: ..." per field."""
        super().clean()
        if self.kind not in KINDS:
            raise ValidationError({"kind": [f"unknown integration {self.kind!r}"]})
        try:
            plain = self.plain_settings()
        except SecretError as exc:
            raise ValidationError({"settings": [f"settings: {exc}"]}) from exc
        except ValueError as exc:
            raise ValidationError({"settings": [f"settings: {exc}"]}) from exc
        errors = spec_for(self.kind).validate(plain)
        if errors:
            raise ValidationError(
                {"settings": [_error_line(name, text) for name, text in sorted(errors.items())]}
            )

    def save(self, *args: Any, **kwargs: Any) -> None:
        # Secrets never reach the table in plain text, whoever saves (admin, shell, fixtures).
        if not isinstance(self.settings, dict):
            raise ValueError(f"{self.kind}: settings must be a dict, got {self.settings!r}")
        self.settings = crypto.encrypt_fields(self.settings, self.secret_fields())
        super().save(*args, **kwargs)

    def secret_fields(self) -> tuple[str, ...]:
        return spec_for(self.kind).secret_fields

    def plain_settings(self) -> dict[str, Any]:
        """The settings with secrets decrypted: for the clients, never for display."""
        if not isinstance(self.settings, dict):
            raise ValueError("must be a JSON object")
        return crypto.decrypt_fields(self.settings, self.secret_fields())

    def masked_settings(self) -> dict[str, Any]:
        return crypto.mask_fields(self.settings, self.secret_fields())


def _error_line(name: str, text: str) -> str:
    return f"settings: {text}" if name == "__all__" else f"settings.{name}: {text}"


class FrigateDetection(models.Model):
    """One Frigate event (a tracked object). Updates of the same event merge into its row."""

    event_id = models.CharField(max_length=100, unique=True)
    camera = models.CharField(max_length=100, db_index=True)
    label = models.CharField(max_length=100)
    sub_label = models.CharField(max_length=100, blank=True)
    score = models.FloatField(null=True, blank=True, help_text="The highest score seen.")
    zones = models.JSONField(default=list, blank=True, help_text="Every zone entered.")
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    has_snapshot = models.BooleanField(default=False)
    has_clip = models.BooleanField(default=False)
    false_positive = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    class Meta:
        ordering = ["-started_at"]
        indexes = [models.Index(fields=["camera", "-started_at"], name="detection_camera_recent")]

    def __str__(self) -> str:
        return f"{self.label} on {self.camera} ({self.event_id})"
