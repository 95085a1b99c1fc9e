"""Maintenance of the integrations' tables."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from services.integrations.models import FrigateDetection
from services.integrations.settings import FRIGATE_DETECTIONS_RETENTION
from services.registry import task
from services.schedules import Cron
from services.tasks import MAINTENANCE_TAGS, delete_older_than, resolve_slot


@task(Cron("10 * * * *"), tags=MAINTENANCE_TAGS, retries=2, timeout=600)
def cleanup_frigate_detections(slot: datetime | None = None) -> dict[str, Any]:
    """Delete Frigate detections last updated before the retention (hourly, at :10)."""
    return delete_older_than(
        "cleanup_frigate_detections",
        FRIGATE_DETECTIONS_RETENTION.key,
        FrigateDetection.objects.all(),
        "updated_at",
        resolve_slot(slot),
    )
