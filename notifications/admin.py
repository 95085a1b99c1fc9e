"""Admin pages of the notification outbox: providers (secrets masked), deliveries, attempt logs.

A provider's secrets are never sent to the browser, in plain or encrypted form: the config field
shows them masked (``••••1234``). Saving with a secret left blank, still masked or left out keeps
the stored one; ``null`` removes it. Delivery actions only write the table: the trigger of
migration 0002 NOTIFYs the worker on commit.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils import timezone

from notifications import crypto
from notifications.models import (
    NotificationDelivery,
    NotificationLog,
    NotificationProvider,
    ProviderType,
)
from notifications.outbox import enqueue

TEST_TITLE = "Test notification"
TEST_MESSAGE = "This is a test from the alarm panel admin. If you can read it, the provider works."
Status = NotificationDelivery.Status

# --- providers ---------------------------------------------------------------------------------


def secret_fields_of(provider_type: str) -> tuple[str, ...]:
    """The secret keys of a type; of every type for an unknown one (clean() reports it)."""
    try:
        return NotificationProvider(type=provider_type).secret_fields()
    except ValueError:
        every = (secret_fields_of(known) for known in ProviderType.values)
        return tuple(sorted({name for fields in every for name in fields}))


class MaskedConfigField(forms.JSONField):
    """The config as JSON with secrets masked in whatever it renders, initial or re-displayed.

    A re-displayed form (after an error) shows a secret typed in that request as "" rather than
    echo it back: leaving it blank would then keep the stored one, so the form says so.
    """

    secret_fields: tuple[str, ...] = ()
    stored: dict[str, Any] = {}

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, dict):
            value = {name: self._shown(name, item) for name, item in value.items()}
        elif isinstance(value, list | int | float | bool):
            value = {}  # not an object, so no way to tell its secrets apart: show none of it
        return super().prepare_value(value)

    def _shown(self, name: str, value: Any) -> Any:
        if name not in self.secret_fields or value in (None, ""):
            return value
        stored = self.stored.get(name)
        if crypto.is_mask(value) or value == stored:
            return crypto.mask(stored) if isinstance(stored, str) else crypto.MASK
        return ""  # typed in this (failed) request: not echoed


class NotificationProviderForm(forms.ModelForm):
    config = MaskedConfigField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 10, "cols": 80}),
        help_text="A JSON object. Secrets show masked; leave one blank or masked to keep it, "
        "set it to null to remove it.",
    )

    class Meta:
        model = NotificationProvider
        fields = ("name", "type", "enabled", "config")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        provider_type = self.data.get("type") if self.is_bound else self.instance.type
        field = self.fields["config"]
        assert isinstance(field, MaskedConfigField)
        stored = self.instance.config
        # A config written past save() may not be an object; then there is nothing to keep.
        self.stored_config: dict[str, Any] = dict(stored) if isinstance(stored, dict) else {}
        field.stored = self.stored_config
        field.secret_fields = secret_fields_of(str(provider_type or self.instance.type or ""))

    def clean_config(self) -> dict[str, Any]:
        config = self.cleaned_data.get("config")
        if config is None:
            config = {}
        if not isinstance(config, dict):
            raise forms.ValidationError("config: must be a JSON object")
        return config

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if isinstance(cleaned.get("config"), dict):
            secrets = secret_fields_of(str(cleaned.get("type", "")))
            cleaned["config"] = merge_secrets(cleaned["config"], self.stored_config, secrets)
        return cleaned


def merge_secrets(
    submitted: dict[str, Any], stored: dict[str, Any], secret_fields: tuple[str, ...]
) -> dict[str, Any]:
    """The submitted config with each blank, masked or missing secret taken from ``stored``."""
    merged = dict(submitted)
    for name in secret_fields:
        value = submitted.get(name, "")
        if value is None:
            merged.pop(name, None)  # null: remove the secret
        elif (value == "" or crypto.is_mask(value)) and stored.get(name):
            merged[name] = stored[name]
        elif value == "" or crypto.is_mask(value):
            merged.pop(name, None)  # nothing stored to keep; a mask is no secret
    return merged


@admin.register(NotificationProvider)
class NotificationProviderAdmin(admin.ModelAdmin):
    form = NotificationProviderForm
    list_display = ("name", "type", "enabled", "config_summary", "secrets_set", "updated_at")
    list_filter = ("type", "enabled")
    search_fields = ("name",)
    actions = ("send_test",)
    readonly_fields = ("secrets_set", "created_at", "updated_at")

    @admin.display(description="config")
    def config_summary(self, provider: NotificationProvider) -> str:
        return json.dumps(_masked(provider), sort_keys=True, ensure_ascii=False)

    @admin.display(description="secrets")
    def secrets_set(self, provider: NotificationProvider) -> str:
        """The old panel's ``has_<field>`` flags: which secrets are stored, never their values."""
        flags = _flags(provider)
        return ", ".join(f"{name}: {'yes' if is_set else 'no'}" for name, is_set in flags) or "-"

    @admin.action(description="Send test", permissions=["change"])
    def send_test(self, request: HttpRequest, queryset: QuerySet[NotificationProvider]) -> None:
        sent = [
            enqueue(provider, TEST_MESSAGE, title=TEST_TITLE, data={"test": True})
            for provider in queryset.filter(enabled=True)
        ]
        self.message_user(
            request,
            f"Queued a test notification to {len(sent)} provider(s); see the deliveries for "
            "the outcome.",
        )
        disabled = queryset.filter(enabled=False).count()
        if disabled:
            self.message_user(
                request, f"{disabled} disabled provider(s) skipped.", messages.WARNING
            )


def _masked(provider: NotificationProvider) -> dict[str, Any]:
    if not isinstance(provider.config, dict):  # only a write that bypassed save() does this
        return {"invalid config": crypto.MASK}
    try:
        return provider.masked_config()
    except ValueError:  # unknown type: mask every string rather than risk showing a secret
        return {k: crypto.MASK if isinstance(v, str) else v for k, v in provider.config.items()}


def _flags(provider: NotificationProvider) -> list[tuple[str, bool]]:
    try:
        return sorted(provider.secret_flags().items())
    except (ValueError, AttributeError):  # unknown type, or a config that is not an object
        return []


# --- deliveries --------------------------------------------------------------------------------


@admin.register(NotificationDelivery)
class NotificationDeliveryAdmin(admin.ModelAdmin):
    list_display = (
        "id", "provider", "title_or_message", "status", "attempts", "max_attempts",
        "next_attempt_at", "last_error_code", "created_at",
    )  # fmt: skip
    list_filter = ("status", ("provider", admin.RelatedOnlyFieldListFilter), "created_at")
    list_select_related = ("provider",)
    date_hierarchy = "created_at"
    search_fields = ("title", "message", "idempotency_key")
    actions = ("retry_now", "requeue_dead")
    # Rows are written by enqueue and the worker; the admin changes them through actions only.
    readonly_fields = tuple(f.name for f in NotificationDelivery._meta.fields)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="notification")
    def title_or_message(self, delivery: NotificationDelivery) -> str:
        return delivery.title or delivery.message[:80]

    @admin.action(description="Retry now", permissions=["change"])
    def retry_now(self, request: HttpRequest, queryset: QuerySet[NotificationDelivery]) -> None:
        now = timezone.now()
        expired_lease = Q(status=Status.SENDING, locked_until__lt=now)
        retryable = queryset.filter(Q(status__in=(Status.PENDING, Status.DEAD)) | expired_lease)
        count = _requeue(retryable, now)
        self.message_user(
            request,
            f"{count} deliver(y/ies) due now; attempts are kept, so a dead one gets one more "
            'try (use "Requeue dead" for a full set).',
        )
        _report_skipped(self, request, queryset.count() - count)

    @admin.action(description="Requeue dead (reset attempts)", permissions=["change"])
    def requeue_dead(self, request: HttpRequest, queryset: QuerySet[NotificationDelivery]) -> None:
        count = _requeue(queryset.filter(status=Status.DEAD), timezone.now(), attempts=0)
        self.message_user(request, f"Requeued {count} dead deliver(y/ies) with attempts reset.")
        _report_skipped(self, request, queryset.count() - count)


def _requeue(queryset: QuerySet[NotificationDelivery], now: Any, **changes: Any) -> int:
    """Make rows pending and due now; the trigger NOTIFYs the worker when this commits."""
    return queryset.update(
        status=Status.PENDING,
        next_attempt_at=now,
        locked_by="",
        locked_until=None,
        updated_at=now,
        **changes,
    )


def _report_skipped(model_admin: admin.ModelAdmin, request: HttpRequest, skipped: int) -> None:
    if skipped > 0:
        model_admin.message_user(
            request,
            f"{skipped} deliver(y/ies) left alone: already sent, or being sent right now.",
            messages.WARNING,
        )


# --- logs --------------------------------------------------------------------------------------


@admin.register(NotificationLog)
class NotificationLogAdmin(admin.ModelAdmin):
    list_display = (
        "created_at", "delivery", "provider", "attempt", "outcome", "http_status", "error_code",
        "duration_ms", "worker_id",
    )  # fmt: skip
    list_filter = ("outcome", ("provider", admin.RelatedOnlyFieldListFilter))
    list_select_related = ("delivery", "provider")
    date_hierarchy = "created_at"
    search_fields = ("error_code", "error_message", "delivery__idempotency_key")
    readonly_fields = tuple(f.name for f in NotificationLog._meta.fields)

    # History written by the worker: viewable, never added or edited here.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
