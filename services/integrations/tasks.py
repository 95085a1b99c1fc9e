"""The integrations' periodic tasks: Frigate's retention, and Home Assistant's state sync."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import aiohttp
from asgiref.sync import async_to_sync

from alarm.models import Entity
from alarm.services import aupdate_entity_state
from services.integrations import config, home_assistant
from services.integrations.ha_sync import KnownState, sync_states
from services.integrations.home_assistant import HomeAssistantSettings
from services.integrations.models import FrigateDetection
from services.integrations.settings import FRIGATE_DETECTIONS_RETENTION
from services.registry import task
from services.schedules import Cron, Every
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


def home_assistant_active() -> bool:
    """Home Assistant is configured and enabled. One query."""
    return config.load("home_assistant").active


@task(Every(300), timeout=120, enabled_when=home_assistant_active, enabled_changes=config.CHANNEL)
def sync_entity_states(slot: datetime | None = None) -> dict[str, Any]:
    """Pull Home Assistant's ``/api/states`` and write only the entities that differ (a
    fallback for what the WebSocket may have missed); runs only while it is configured."""
    effective = config.load("home_assistant")
    if not effective.active:
        return {"skipped": "Home Assistant is not configured"}
    settings = home_assistant.settings_from(effective)
    # async_to_sync: on_state's ORM calls run on this task's thread, whose connections the
    # executor closes when the run ends.
    summary: dict[str, Any] = async_to_sync(_pull)(settings, _known_states())
    return summary


async def _pull(settings: HomeAssistantSettings, known: dict[str, KnownState]) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session:
        result = await sync_states(
            settings, session=session, on_state=aupdate_entity_state, known=known
        )
    return result.as_dict()


def _known_states() -> dict[str, KnownState]:
    rows = Entity.objects.filter(source=Entity.Source.HOME_ASSISTANT)
    return {
        entity_id: KnownState(state, attributes)
        for entity_id, state, attributes in rows.values_list("entity_id", "state", "attributes")
    }
