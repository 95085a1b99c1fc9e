from __future__ import annotations

from typing import TYPE_CHECKING

from django.apps import AppConfig

if TYPE_CHECKING:
    from services.runner import Component
    from services.worker import WorkerContext


class RealtimeConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "realtime"

    def ready(self) -> None:
        from realtime.receivers import connect_alarm_signals, connect_run_signals

        connect_alarm_signals()
        connect_run_signals()

    def worker_components(self, ctx: WorkerContext) -> list[Component]:
        from realtime.hub import status_hub

        return [status_hub(ctx)]
