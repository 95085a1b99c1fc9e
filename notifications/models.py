"""The notification outbox: providers, deliveries (the outbox rows) and one log row per attempt.

The delivery table is the truth. A trigger (migration 0002) NOTIFYs the worker when a row
becomes pending, so any writer — the ORM, the admin, raw SQL, another service — wakes it.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from notifications import crypto
from notifications.crypto import SecretError


class ProviderType(models.TextChoices):
    WEBHOOK = "webhook"
    SLACK = "slack"
    DISCORD = "discord"
    PUSHBULLET = "pushbullet"
    HOME_ASSISTANT = "home_assistant", "Home Assistant"


class NotificationProvider(models.Model):
    name = models.CharField(max_length=100, unique=True)
    type = models.CharField(max_length=32, choices=ProviderType.choices)
    enabled = models.BooleanField(default=True)
    # Secret fields are stored encrypted (notifications.crypto); see providers for which.
    config = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.type})"

    def clean(self) -> None:
        """Validate ``config`` for the type; errors keyed ``config`` read "config.url: ..."."""
        super().clean()
        spec = self._spec_or_validation_error()
        if not isinstance(self.config, dict):
            raise ValidationError({"config": ["config: must be a JSON object"]})
        try:
            plain = self.plain_config()
        except SecretError as exc:
            raise ValidationError({"config": [f"config: {exc}"]}) from exc
        errors = spec.validate(plain)
        if errors:
            raise ValidationError(
                {"config": [_config_error(f, e) for f, e in sorted(errors.items())]}
            )

    def save(self, *args: Any, **kwargs: Any) -> None:
        # Secrets never reach the table in plain text, whoever saves (admin, shell, fixtures).
        if not isinstance(self.config, dict):
            raise ValueError(f"provider {self.name!r}: config must be a dict, got {self.config!r}")
        self.config = crypto.encrypt_fields(self.config, self.secret_fields())
        super().save(*args, **kwargs)

    def secret_fields(self) -> tuple[str, ...]:
        """The config keys of this type that hold secrets. ValueError for an unknown type."""
        try:
            return tuple(_provider_spec(self.type).secret_fields)
        except (LookupError, ValueError) as exc:
            raise ValueError(_unknown_type_message(self.type)) from exc

    def secrets(self) -> dict[str, Any]:
        """The decrypted secret values present in config. May raise crypto.SecretError."""
        fields = set(self.secret_fields())
        return {k: v for k, v in self.plain_config().items() if k in fields}

    def plain_config(self) -> dict[str, Any]:
        """The config with its secrets decrypted: what the sender uses, never for display."""
        return crypto.decrypt_fields(self.config, self.secret_fields())

    def masked_config(self) -> dict[str, Any]:
        """The config fit for display and logs: every secret masked."""
        return crypto.mask_fields(self.config, self.secret_fields())

    def secret_flags(self) -> dict[str, bool]:
        """``{"has_token": True, ...}``: which secrets are set, without showing them."""
        return {f"has_{name}": bool(self.config.get(name)) for name in self.secret_fields()}

    def _spec_or_validation_error(self) -> Any:
        try:
            return _provider_spec(self.type)
        except (LookupError, ValueError) as exc:
            raise ValidationError({"type": [_unknown_type_message(self.type)]}) from exc


def _provider_spec(provider_type: str) -> Any:
    # Imported late: the providers package pulls in aiohttp, which models need not load.
    from notifications.providers import get_provider

    return get_provider(provider_type)


def _config_error(field: str, error: str) -> str:
    return f"config: {error}" if field == "__all__" else f"config.{field}: {error}"


def _unknown_type_message(provider_type: str) -> str:
    known = ", ".join(ProviderType.values)
    return f"unknown provider type {provider_type!r}; known types: {known}"


def new_idempotency_key() -> str:
    return uuid.uuid4().hex


class NotificationDelivery(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        SENDING = "sending"
        SENT = "sent"
        DEAD = "dead"

    # SET_NULL: a delivery outlives its provider and is then dead-lettered with that reason.
    provider = models.ForeignKey(
        NotificationProvider, null=True, on_delete=models.SET_NULL, related_name="deliveries"
    )
    title = models.CharField(max_length=300, blank=True)
    message = models.TextField()
    data = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    max_attempts = models.PositiveIntegerField(default=5)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    locked_by = models.CharField(max_length=200, blank=True)
    locked_until = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    last_error_code = models.CharField(max_length=64, blank=True)
    last_error_message = models.TextField(blank=True)
    # Unique by a constraint, not unique=True: that would add a second (LIKE) index that
    # nothing uses and every claim and result write would have to update.
    idempotency_key = models.CharField(max_length=200, default=new_idempotency_key)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "notification deliveries"
        indexes = [
            # The claim query: due pending rows, and expired leases of rows left "sending".
            models.Index(
                fields=["next_attempt_at"],
                name="delivery_pending_due",
                condition=models.Q(status="pending"),
            ),
            models.Index(
                fields=["locked_until"],
                name="delivery_sending_lease",
                condition=models.Q(status="sending"),
            ),
            # Retention cleanup of finished rows. Partial, so claims (pending -> sending) leave
            # it alone; and the worker's queries find no other index on status to misuse.
            models.Index(
                fields=["updated_at"],
                name="delivery_finished_updated",
                condition=models.Q(status__in=["sent", "dead"]),
            ),
        ]
        constraints = [
            models.UniqueConstraint(fields=["idempotency_key"], name="delivery_idempotency_key"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.title or self.message[:40]} [{self.status}]"


class NotificationLog(models.Model):
    class Outcome(models.TextChoices):
        SENT = "sent"
        RETRY = "retry"
        DEAD = "dead"

    # No foreign-key constraints in the database (db_constraint=False; Django still cascades
    # and nulls on delete): the worker writes these rows in the statement that updates their
    # delivery, so they cannot dangle, and the constraint checks cost more than the insert
    # (two lookups per row, planned once per connection: planned on an empty table, they
    # scanned the whole table for every row later).
    delivery = models.ForeignKey(
        NotificationDelivery, on_delete=models.CASCADE, related_name="logs", db_constraint=False
    )
    provider = models.ForeignKey(
        NotificationProvider,
        null=True,
        on_delete=models.SET_NULL,
        related_name="logs",
        db_constraint=False,
    )
    attempt = models.PositiveIntegerField()
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    http_status = models.PositiveIntegerField(null=True, blank=True)
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True)
    duration_ms = models.FloatField(null=True, blank=True)
    worker_id = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"delivery {self.delivery_id} attempt {self.attempt}: {self.outcome}"
