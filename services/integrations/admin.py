"""Admin pages: each integration's configuration (secrets masked) and Frigate's detections.

A configuration's secrets are never sent to the browser, plain or encrypted: the settings field
shows them masked (``••••1234``); a secret left blank, still masked or left out keeps the
stored one, ``null`` removes it (the notification providers' rules, reused). Saving only writes
the row: its trigger NOTIFYs the worker, which restarts that integration if its settings changed.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from notifications import crypto
from notifications.admin import MaskedConfigField, merge_secrets
from services.integrations.config_spec import spec_for
from services.integrations.models import FrigateDetection, IntegrationConfig


def secret_fields_of(kind: str) -> tuple[str, ...]:
    try:
        return spec_for(kind).secret_fields
    except ValueError:  # unknown kind: clean() reports it; mask nothing it could not know
        return ()


def settings_help(kind: str | None) -> str:
    lines = ["A JSON object; fields left out take their default."]
    if kind:
        try:
            spec = spec_for(kind)
        except ValueError:
            return lines[0]
        for field in spec.fields:
            default = json.dumps(field.default)
            secret = " (secret, shown masked)" if field.secret else ""
            lines.append(f"{field.name}: {field.help or field.type.__name__} [{default}]{secret}")
    return "<br>".join(lines)


class IntegrationConfigForm(forms.ModelForm):
    settings = MaskedConfigField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 12, "cols": 80}),
    )

    class Meta:
        model = IntegrationConfig
        fields = ("kind", "enabled", "settings")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        kind = str((self.data.get("kind") if self.is_bound else None) or self.instance.kind or "")
        field = self.fields["settings"]
        assert isinstance(field, MaskedConfigField)
        stored = self.instance.settings
        self.stored_settings: dict[str, Any] = dict(stored) if isinstance(stored, dict) else {}
        field.stored = self.stored_settings
        field.secret_fields = secret_fields_of(kind)
        field.help_text = settings_help(kind) + (
            "<br>Secrets: leave blank or masked to keep, null to remove." if kind else ""
        )

    def clean_settings(self) -> dict[str, Any]:
        value = self.cleaned_data.get("settings")
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise forms.ValidationError("settings: must be a JSON object")
        return value

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if isinstance(cleaned.get("settings"), dict):
            secrets = secret_fields_of(str(cleaned.get("kind", "")))
            cleaned["settings"] = merge_secrets(cleaned["settings"], self.stored_settings, secrets)
        return cleaned


@admin.register(IntegrationConfig)
class IntegrationConfigAdmin(admin.ModelAdmin):
    form = IntegrationConfigForm
    list_display = ("kind", "enabled", "settings_summary", "secrets_set", "updated_at")
    list_filter = ("enabled",)
    readonly_fields = ("secrets_set", "created_at", "updated_at")

    @admin.display(description="settings")
    def settings_summary(self, row: IntegrationConfig) -> str:
        if not isinstance(row.settings, dict):
            return "(not a JSON object)"
        try:
            shown = row.masked_settings()
        except ValueError:
            shown = {k: crypto.MASK if isinstance(v, str) else v for k, v in row.settings.items()}
        return json.dumps(shown, sort_keys=True, ensure_ascii=False)

    @admin.display(description="secrets")
    def secrets_set(self, row: IntegrationConfig) -> str:
        stored = row.settings if isinstance(row.settings, dict) else {}
        flags = [
            f"{name}: {'yes' if stored.get(name) else 'no'}" for name in secret_fields_of(row.kind)
        ]
        return ", ".join(flags) or "-"


@admin.register(FrigateDetection)
class FrigateDetectionAdmin(admin.ModelAdmin):
    list_display = ("started_at", "camera", "label", "sub_label", "score", "zones_text", "ended_at")
    list_filter = ("camera", "label", "false_positive")
    date_hierarchy = "started_at"
    search_fields = ("event_id", "camera", "label", "sub_label")
    readonly_fields = tuple(f.name for f in FrigateDetection._meta.fields)

    @admin.display(description="zones")
    def zones_text(self, row: FrigateDetection) -> str:
        return ", ".join(row.zones or [])

    # Written by the worker from Frigate's events: viewable and deletable, never edited here.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
