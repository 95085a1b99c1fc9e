from __future__ import annotations

from typing import TYPE_CHECKING

from django.apps import AppConfig

if TYPE_CHECKING:
    from services.runner import Component
    from services.worker import WorkerContext


class NotificationsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "notifications"

    def worker_components(self, ctx: WorkerContext) -> list[Component]:
        from django.conf import settings

        from notifications.dispatcher import OutboxComponent, OutboxSettings

        outbox = OutboxSettings(
            concurrency=settings.OUTBOX_CONCURRENCY,
            batch=settings.OUTBOX_BATCH,
            lease=settings.OUTBOX_LEASE,
            http_timeout=settings.OUTBOX_HTTP_TIMEOUT,
            allow_loopback=settings.OUTBOX_ALLOW_LOOPBACK,
            block_private=settings.OUTBOX_BLOCK_PRIVATE,
            synchronous_commit=settings.OUTBOX_SYNCHRONOUS_COMMIT,
        )
        return [OutboxComponent(ctx.clock, ctx.worker_id, ctx.listener.subscribe, outbox)]
