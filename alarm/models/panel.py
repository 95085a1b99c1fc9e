"""The alarm panel: its one state row and its one settings row."""

from __future__ import annotations

from typing import Any

from django.core.validators import MaxValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from alarm import state_machine

SINGLETON_ID = 1
MAX_DELAY_SECONDS = 600


class AlarmState(models.Model):
    """The panel's state (one row, id 1). Changed only through ``alarm.panel`` commands.

    ``delay_until`` is the end of the running exit (``arming``) or entry (``pending``) delay:
    the worker's alarm timer, NOTIFYed by a trigger like the other timer tables.
    """

    class State(models.TextChoices):
        DISARMED = state_machine.DISARMED
        ARMING = state_machine.ARMING
        ARMED_HOME = state_machine.ARMED_HOME
        ARMED_AWAY = state_machine.ARMED_AWAY
        ARMED_NIGHT = state_machine.ARMED_NIGHT
        ARMED_VACATION = state_machine.ARMED_VACATION
        PENDING = state_machine.PENDING
        TRIGGERED = state_machine.TRIGGERED

    state = models.CharField(max_length=32, choices=State.choices, default=State.DISARMED)
    previous_state = models.CharField(max_length=32, choices=State.choices, blank=True)
    # arming: the mode it leads to; pending: the mode it came from.
    target_state = models.CharField(max_length=32, blank=True)
    changed_at = models.DateTimeField(default=timezone.now)
    changed_by = models.CharField(max_length=200, blank=True)
    delay_kind = models.CharField(max_length=8, blank=True)  # "exit", "entry" or ""
    delay_seconds = models.FloatField(null=True, blank=True)
    delay_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "alarm state"
        constraints = [
            models.CheckConstraint(condition=Q(id=SINGLETON_ID), name="alarmstate_singleton"),
            models.CheckConstraint(
                condition=Q(delay_until__isnull=True) | Q(state__in=["arming", "pending"]),
                name="alarmstate_delay_only_when_waiting",
            ),
        ]

    def __str__(self) -> str:
        return self.state

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.pk = SINGLETON_ID
        super().save(*args, **kwargs)

    def status(self) -> state_machine.Status:
        delay = None
        if self.delay_until is not None and self.delay_kind in ("exit", "entry"):
            delay = state_machine.Delay(
                self.delay_kind,  # type: ignore[arg-type]
                self.delay_until,
                self.delay_seconds or 0.0,
            )
        return state_machine.Status(self.state, self.target_state, delay)

    def snapshot(self) -> dict[str, Any]:
        """The JSON-able dict of ``alarm_state_snapshot()``."""
        return snapshot_of(
            self.state, self.previous_state, self.changed_at, self.delay_kind,
            self.delay_until, self.delay_seconds,
        )  # fmt: skip


def snapshot_of(
    state: str,
    previous_state: str,
    changed_at: Any,
    delay_kind: str,
    delay_until: Any,
    delay_seconds: float | None,
) -> dict[str, Any]:
    delay = None
    if delay_until is not None:
        seconds = delay_seconds or 0
        delay = {
            "kind": delay_kind,
            "until": delay_until.isoformat(),
            "seconds": int(seconds) if float(seconds).is_integer() else seconds,
        }
    return {
        "state": state,
        "previous_state": previous_state or None,
        "changed_at": changed_at.isoformat() if changed_at else None,
        "delay": delay,
    }


class AlarmSettings(models.Model):
    """The panel's settings (one row, id 1), edited in the admin; read at each command."""

    exit_delay_seconds = models.PositiveIntegerField(
        default=60,
        validators=[MaxValueValidator(MAX_DELAY_SECONDS)],
        help_text="Arming -> armed after this many seconds (0: at once).",
    )
    entry_delay_seconds = models.PositiveIntegerField(
        default=30,
        validators=[MaxValueValidator(MAX_DELAY_SECONDS)],
        help_text="A sensor trip while armed -> pending, then triggered after this many "
        "seconds unless disarmed (0: triggered at once).",
    )
    notify_on_trigger = models.BooleanField(
        default=True, help_text="Entering triggered notifies every enabled provider."
    )
    trigger_message = models.CharField(max_length=300, default="The alarm was triggered")

    class Meta:
        verbose_name = "alarm settings"
        verbose_name_plural = "alarm settings"
        constraints = [
            models.CheckConstraint(condition=Q(id=SINGLETON_ID), name="alarmsettings_singleton"),
            models.CheckConstraint(
                condition=Q(exit_delay_seconds__lte=MAX_DELAY_SECONDS)
                & Q(entry_delay_seconds__lte=MAX_DELAY_SECONDS),
                name="alarmsettings_delays_in_range",
            ),
        ]

    def __str__(self) -> str:
        return "alarm settings"

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.pk = SINGLETON_ID
        super().save(*args, **kwargs)

    @classmethod
    def current(cls) -> AlarmSettings:
        """The stored settings, or the defaults when no row exists (one query)."""
        return cls.objects.filter(pk=SINGLETON_ID).first() or cls(pk=SINGLETON_ID)

    def delays(self) -> state_machine.Delays:
        return state_machine.Delays(self.exit_delay_seconds, self.entry_delay_seconds)
