"""Daily maintenance of the outbox's tables: finished deliveries and attempt logs by age."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from notifications.models import NotificationDelivery, NotificationLog
from notifications.settings import NOTIFICATION_DELIVERIES_RETENTION, NOTIFICATION_LOGS_RETENTION
from services.registry import task
from services.schedules import DailyAt
from services.tasks import MAINTENANCE_TAGS, delete_older_than, resolve_slot

FINISHED_STATUSES = (NotificationDelivery.Status.SENT, NotificationDelivery.Status.DEAD)


@task(DailyAt(3, 5), tags=MAINTENANCE_TAGS, retries=2, timeout=600)
def cleanup_notification_logs(slot: datetime | None = None) -> dict[str, Any]:
    """Delete attempt logs older than the retention (retention.notification_logs_days)."""
    return delete_older_than(
        "cleanup_notification_logs",
        NOTIFICATION_LOGS_RETENTION.key,
        NotificationLog.objects.all(),
        "created_at",
        resolve_slot(slot),
    )


@task(DailyAt(3, 7), tags=MAINTENANCE_TAGS, retries=2, timeout=600)
def cleanup_notification_deliveries(slot: datetime | None = None) -> dict[str, Any]:
    """Delete sent/dead deliveries not updated within the retention, with their logs.

    Age counts from updated_at, the time the delivery was finished (or last requeued), not from
    created_at: a delivery retried for days keeps its full retention after it ends. Pending and
    sending rows are never deleted, however old: the worker still owes them a send.
    """
    return delete_older_than(
        "cleanup_notification_deliveries",
        NOTIFICATION_DELIVERIES_RETENTION.key,
        NotificationDelivery.objects.filter(status__in=FINISHED_STATUSES),
        "updated_at",
        resolve_slot(slot),
    )
