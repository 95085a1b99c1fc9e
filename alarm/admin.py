"""Admin pages of the alarm app. History tables (events, action logs) are read-only."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from alarm.models import AlarmEvent, Entity, Rule, RuleActionLog, RuleEntityRef


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


@admin.register(Rule)
class RuleAdmin(admin.ModelAdmin):
    list_display = ("name", "enabled", "priority", "cooldown_seconds", "updated_at")
    list_filter = ("enabled",)
    search_fields = ("name",)
    readonly_fields = ("created_at", "updated_at")
    inlines = (RuleEntityRefInline,)


@admin.register(RuleActionLog)
class RuleActionLogAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("fired_at", "rule_name", "source", "error")
    list_filter = ("source",)
    list_select_related = ("rule",)
    date_hierarchy = "fired_at"
    search_fields = ("rule_name", "error")
