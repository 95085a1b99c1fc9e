from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.apps import AppConfig
from django.db.models.signals import pre_delete

if TYPE_CHECKING:
    from services.runner import Component
    from services.worker import WorkerContext


class AlarmConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "alarm"

    def ready(self) -> None:
        from alarm.models import Rule

        # Also for queryset (admin bulk) deletes: Django sends pre_delete per row to receivers.
        pre_delete.connect(_cancel_pending_of_deleted_rule, sender=Rule, dispatch_uid="alarm")

    def worker_components(self, ctx: WorkerContext) -> list[Component]:
        from alarm import wakeup
        from alarm.timers import AlarmTimers
        from services.clock import RealClock

        clock = ctx.clock
        # The real clock wakes the component on a timerfd: the loop's own timers round up to ms.
        sleeper = None
        if isinstance(clock, RealClock) and wakeup.available():
            sleeper = wakeup.PreciseSleeper(clock)
        from django.conf import settings

        lanes = settings.ALARM_TIMER_LANES
        return [
            AlarmTimers(clock, ctx.worker_id, ctx.listener.subscribe, lanes=lanes, sleeper=sleeper)
        ]


def _cancel_pending_of_deleted_rule(sender: Any, instance: Any, **kwargs: Any) -> None:
    from alarm.rule_engine import cancel_for_deleted_rule

    cancel_for_deleted_rule(instance.pk)
