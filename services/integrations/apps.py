from __future__ import annotations

from typing import TYPE_CHECKING

from django.apps import AppConfig

if TYPE_CHECKING:
    from services.runner import Component
    from services.worker import WorkerContext


class IntegrationsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "services.integrations"
    label = "integrations"
    verbose_name = "Integrations"

    def worker_components(self, ctx: WorkerContext) -> list[Component]:
        from services.integrations.wiring import worker_components

        return worker_components(ctx)
