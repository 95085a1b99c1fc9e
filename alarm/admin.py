"""Admin pages of the alarm app. History tables (events, action logs) are read-only.

Rules are validated field by field (conditions, actions, cooldown: each error names its
path); runtimes are read-only; pending actions can be cancelled; the alarm state has arm,
disarm and trigger actions; the alarm settings hold the exit and entry delays.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from alarm import panel, state_machine
from alarm.models import (
    AlarmEvent,
    AlarmSettings,
    AlarmState,
    Entity,
    PendingAction,
    Rule,
    RuleActionLog,
    RuleEntityRef,
    RuleRuntime,
)
from alarm.rule_engine import cancel_pending
from alarm.state_machine import NoChange, Outcome, Refused


class ReadOnlyAdminMixin:
    """Viewable and deletable, never added or edited: these rows record what happened."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Entity)
class EntityAdmin(admin.ModelAdmin):
    list_display = ("entity_id", "name", "domain", "state", "source", "last_changed", "last_seen")
    list_filter = ("domain", "source")
    search_fields = ("entity_id", "name")
    readonly_fields = ("domain", "created_at", "updated_at")


@admin.register(AlarmEvent)
class AlarmEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("timestamp", "event_type", "state_from", "state_to", "entity", "message")
    list_filter = ("event_type",)
    list_select_related = ("entity",)
    date_hierarchy = "timestamp"
    search_fields = ("message", "entity__entity_id")


class RuleEntityRefInline(ReadOnlyAdminMixin, admin.TabularInline):
    """The entity ids the rule's conditions reference; Rule.save() maintains them."""

    model = RuleEntityRef
    fields = ("entity_id",)
    readonly_fields = ("entity_id",)
    extra = 0
    can_delete = False


class RuleRuntimeInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = RuleRuntime
    fields = ("node", "status", "since", "scheduled_for", "fired_at")
    readonly_fields = fields
    extra = 0
    can_delete = False


@admin.register(Rule)
class RuleAdmin(admin.ModelAdmin):
    list_display = ("name", "enabled", "priority", "cooldown_seconds", "updated_at")
    list_filter = ("enabled",)
    search_fields = ("name",)
    readonly_fields = ("created_at", "updated_at")
    inlines = (RuleEntityRefInline, RuleRuntimeInline)
    actions = ("enable", "disable")

    @admin.action(description="Enable selected rules", permissions=["change"])
    def enable(self, request: HttpRequest, queryset: QuerySet[Rule]) -> None:
        self._set_enabled(request, queryset, True)

    @admin.action(description="Disable selected rules (cancels their pending actions)",
                  permissions=["change"])  # fmt: skip
    def disable(self, request: HttpRequest, queryset: QuerySet[Rule]) -> None:
        self._set_enabled(request, queryset, False)

    def _set_enabled(self, request: HttpRequest, queryset: QuerySet[Rule], enabled: bool) -> None:
        # One save() each (not update()): runtimes and pending actions follow the change.
        changed = 0
        for rule in queryset.filter(enabled=not enabled):
            rule.enabled = enabled
            rule.save(update_fields=["enabled", "updated_at"])
            changed += 1
        self.message_user(request, f"{'Enabled' if enabled else 'Disabled'} {changed} rule(s).")


@admin.register(RuleRuntime)
class RuleRuntimeAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("rule", "node", "status", "since", "scheduled_for", "fired_at", "updated_at")
    list_filter = ("status",)
    list_select_related = ("rule",)
    search_fields = ("rule__name", "node")

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # the rule's memory: reset it by saving the rule


@admin.register(PendingAction)
class PendingActionAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "fire_at", "rule_name", "action_type", "status", "while_armed", "reason", "fired_by",
    )  # fmt: skip
    list_filter = ("status", "while_armed")
    search_fields = ("rule_name", "reason", "error")
    date_hierarchy = "fire_at"
    actions = ("cancel",)

    @admin.display(description="action")
    def action_type(self, pending: PendingAction) -> str:
        return str(pending.action.get("type", "?")) if isinstance(pending.action, dict) else "?"

    def has_cancel_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("alarm.change_pendingaction"))

    @admin.action(description="Cancel selected pending actions", permissions=["cancel"])
    def cancel(self, request: HttpRequest, queryset: QuerySet[PendingAction]) -> None:
        # The UPDATE fires the trigger: the worker takes them off its heap at once.
        count = cancel_pending(queryset, f"cancelled by hand ({request.user})", timezone.now())
        self.message_user(request, f"Cancelled {count} scheduled action(s).")


def _panel_action(command: state_machine.Command, label: str) -> Any:
    def act(model_admin: Any, request: HttpRequest, queryset: Any) -> None:
        outcome = panel.command(command, source=f"admin ({request.user})")
        _report(model_admin, request, outcome)

    act.__name__ = label.lower().replace(" ", "_")
    return admin.action(description=label, permissions=["change"])(act)


def _report(model_admin: Any, request: HttpRequest, outcome: Outcome) -> None:
    if isinstance(outcome, Refused):
        model_admin.message_user(request, f"Refused: {outcome.reason}", messages.ERROR)
    elif isinstance(outcome, NoChange):
        model_admin.message_user(request, f"Nothing to do: {outcome.reason}", messages.WARNING)
    else:
        model_admin.message_user(request, f"Alarm is now {outcome.state}.")


@admin.register(AlarmState)
class AlarmStateAdmin(admin.ModelAdmin):
    """One row; select it and run an action. The state changes only through commands."""

    list_display = ("state", "previous_state", "target_state", "changed_at", "changed_by",
                    "delay_kind", "delay_until")  # fmt: skip
    readonly_fields = (*list_display, "delay_seconds")
    actions = (
        *(_panel_action(state_machine.Arm(mode), f"Arm {mode.removeprefix('armed_')}")
          for mode in state_machine.ARMED_MODES),
        _panel_action(state_machine.Disarm(), "Disarm"),
        _panel_action(state_machine.Trigger(), "Trigger"),
    )  # fmt: skip

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> Any:
        # The row may be missing (an emptied database): make it, disarmed, to act on.
        AlarmState.objects.get_or_create(pk=1)
        return super().changelist_view(request, extra_context)


@admin.register(AlarmSettings)
class AlarmSettingsAdmin(admin.ModelAdmin):
    list_display = ("__str__", "exit_delay_seconds", "entry_delay_seconds", "notify_on_trigger")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return not AlarmSettings.objects.exists()

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(RuleActionLog)
class RuleActionLogAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("fired_at", "rule_name", "source", "error")
    list_filter = ("source",)
    list_select_related = ("rule",)
    date_hierarchy = "fired_at"
    search_fields = ("rule_name", "error")
