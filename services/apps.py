from __future__ import annotations

from typing import TYPE_CHECKING

from django.apps import AppConfig

if TYPE_CHECKING:
    from services.runner import Component
    from services.worker import WorkerContext


class ServicesConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "services"
    verbose_name = "Worker and scheduled tasks"

    def ready(self) -> None:
        from services import checks  # noqa: F401 - registers the system checks
        from services.registry import discover

        # Every process knows every task (and the runtime settings their modules declare);
        # a duplicate task name stops start-up here, naming both functions.
        discover()

    def worker_components(self, ctx: WorkerContext) -> list[Component]:
        from services.cron import CronComponent

        return [
            CronComponent(
                ctx.tasks, ctx.db, ctx.executor, ctx.clock, subscribe=ctx.listener.subscribe
            )
        ]
