"""ORM functions of the integrations (sync; the worker calls them on its ORM thread)."""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction

from services.integrations.frigate_parse import Detection, merge
from services.integrations.models import FrigateDetection

MERGED_FIELDS = (
    "camera", "label", "sub_label", "score", "zones", "started_at", "ended_at", "has_snapshot",
    "has_clip", "false_positive",
)  # fmt: skip


def save_detection(update: Detection) -> bool:
    """Insert or merge one Frigate event by its id; True when the row was created."""
    try:
        return _save(update)
    except IntegrityError:
        return _save(update)  # another writer inserted it first (two leaders for a moment)


def _save(update: Detection) -> bool:
    with transaction.atomic():
        row = FrigateDetection.objects.select_for_update().filter(event_id=update.event_id).first()
        stored: dict[str, Any] | None = (
            {name: getattr(row, name) for name in MERGED_FIELDS} if row is not None else None
        )
        values = merge(stored, update)
        if row is None:
            FrigateDetection.objects.create(event_id=update.event_id, **values)
            return True
        if values != stored:
            for name, value in values.items():
                setattr(row, name, value)
            row.save(update_fields=[*MERGED_FIELDS, "updated_at"])
        return False
