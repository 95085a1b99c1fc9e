"""The durable timers of rules: ``for`` nodes waiting (RuleRuntime) and delayed actions.

Each row is the truth; the worker's timer heap is a copy, kept in step by the NOTIFY that
database triggers send on every change of a scheduled row (migration 0003), whoever writes it.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from alarm.conditions import ROOT_PATH
from alarm.models.rules import Rule

ROOT_NODE = ROOT_PATH


class RuleRuntime(models.Model):
    """One rule's memory between evaluations, per condition node.

    For a ``for`` node (``node`` is its path, e.g. ``conditions.all[1].for``): ``since`` is when
    its child started to hold; ``scheduled`` while waiting (the timer is ``scheduled_for`` =
    since + seconds), ``holding`` once the time has come, ``idle`` while the child does not
    hold. For the root (``node`` = ``conditions``): ``holding`` while the whole tree holds
    (so the rule fires once per rising edge) and ``fired_at``, its last firing (cooldown).
    """

    class Status(models.TextChoices):
        IDLE = "idle"
        SCHEDULED = "scheduled"
        HOLDING = "holding"

    rule = models.ForeignKey(Rule, on_delete=models.CASCADE, related_name="runtimes")
    node = models.CharField(max_length=255)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.IDLE)
    since = models.DateTimeField(null=True, blank=True)
    scheduled_for = models.DateTimeField(null=True, blank=True)
    fired_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["rule_id", "node"]
        constraints = [
            models.UniqueConstraint(fields=["rule", "node"], name="ruleruntime_unique"),
            models.CheckConstraint(
                condition=~Q(status="scheduled") | Q(scheduled_for__isnull=False),
                name="ruleruntime_scheduled_has_time",
            ),
        ]
        indexes = [
            models.Index(
                fields=["scheduled_for"],
                condition=Q(status="scheduled"),
                name="ruleruntime_scheduled",
            )
        ]

    def __str__(self) -> str:
        return f"rule {self.rule_id} {self.node}: {self.status}"


class PendingAction(models.Model):
    """A rule action with ``delay_seconds``: it runs at ``fire_at`` unless cancelled first."""

    class Status(models.TextChoices):
        SCHEDULED = "scheduled"
        FIRED = "fired"
        CANCELLED = "cancelled"
        FAILED = "failed"

    rule = models.ForeignKey(
        Rule, null=True, blank=True, on_delete=models.SET_NULL, related_name="pending_actions"
    )
    rule_name = models.CharField(max_length=200, blank=True)
    action = models.JSONField()
    fire_at = models.DateTimeField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.SCHEDULED)
    # The alarm was armed (or pending/triggered) when this was scheduled: a disarm cancels it.
    while_armed = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    # When the worker took it (fired or failed), or when it was cancelled.
    finished_at = models.DateTimeField(null=True, blank=True)
    fired_by = models.CharField(max_length=200, blank=True)
    reason = models.CharField(max_length=200, blank=True, help_text="Why it was cancelled.")
    result = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-fire_at"]
        indexes = [
            models.Index(
                fields=["fire_at"], condition=Q(status="scheduled"), name="pendingaction_scheduled"
            )
        ]

    def __str__(self) -> str:
        kind = self.action.get("type", "?") if isinstance(self.action, dict) else "?"
        return f"{kind} of {self.rule_name or self.rule_id} at {self.fire_at}"
