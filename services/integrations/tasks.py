"""The integrations' periodic tasks: Frigate's retention, and Home Assistant's state sync."""

from __future__ import annotations

import importlib
from datetime import datetime
from typing import Any

from asgiref.sync import async_to_sync

from services.integrations import config, ws_settings
from services.integrations.models import FrigateDetection
from services.integrations.settings import FRIGATE_DETECTIONS_RETENTION
from services.registry import task
from services.schedules import Cron, Every
from services.tasks import MAINTENANCE_TAGS, delete_older_than, resolve_slot

HA_SYNC_MODULE = "services.integrations.ha_sync"


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
    """Home Assistant is configured and enabled, and its client is installed. One query."""
    if not ws_settings.installed(HA_SYNC_MODULE):
        return False
    return config.load("home_assistant").active


@task(Every(300), timeout=120, enabled_when=home_assistant_active)
def sync_entity_states(slot: datetime | None = None) -> dict[str, Any]:
    """Pull Home Assistant's ``/api/states`` and write only the entities that differ (a
    fallback for what the WebSocket may have missed); runs only while it is configured."""
    ha_sync = importlib.import_module(HA_SYNC_MODULE)
    home_assistant = importlib.import_module("services.integrations.home_assistant")
    effective = config.load("home_assistant")
    if not effective.active:
        return {"skipped": "Home Assistant is not configured"}
    settings = home_assistant.HomeAssistantSettings(**ws_settings.home_assistant_kwargs(effective))
    known = _known_states(ha_sync.KnownState)
    # async_to_sync: on_state's ORM calls run on this task's thread, whose connections the
    # executor closes when the run ends.
    summary: dict[str, Any] = async_to_sync(_pull)(ha_sync, settings, known)
    return summary


async def _pull(ha_sync: Any, settings: Any, known: dict[str, Any]) -> dict[str, Any]:
    import aiohttp

    from services.integrations.wiring import entity_states

    async with aiohttp.ClientSession() as session:
        result = await ha_sync.sync_states(
            settings, session=session, on_state=entity_states(), known=known
        )
    found: dict[str, Any] = result.as_dict()
    return found


def _known_states(known_state: Any) -> dict[str, Any]:
    from alarm.models import Entity

    rows = Entity.objects.filter(source=Entity.Source.HOME_ASSISTANT)
    return {
        entity_id: known_state(state, attributes)
        for entity_id, state, attributes in rows.values_list("entity_id", "state", "attributes")
    }
