"""Frigate through a real broker into the database: availability, detections stored and merged,
and the hourly cleanup with its retention setting."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from services.dbthread import AsyncStore
from services.integrations import store
from services.integrations.frigate import FrigateClient, FrigateSettings
from services.integrations.frigate_parse import Detection
from services.integrations.models import FrigateDetection
from services.integrations.settings import FRIGATE_DETECTIONS_RETENTION
from services.integrations.tasks import cleanup_frigate_detections
from services.runtime_settings import set_value
from tests.fakes.recorders import Recorder
from tests.integration.integrations.brokers import Publisher, topic_prefix
from tests.integration.integrations.layers import Stack, running_stack

T0 = 1_750_000_000.0
Saved = Recorder[tuple[str, bool]]  # (event id, created) of each detection stored


@pytest.fixture
async def orm() -> AsyncIterator[AsyncStore]:
    db = AsyncStore()
    yield db
    await db.close()


@pytest.fixture
def saved() -> Saved:
    return Saved()


@pytest.fixture
async def frigate(broker_url: str, orm: AsyncStore, saved: Saved) -> AsyncIterator[Stack]:
    settings = FrigateSettings(topic_prefix=topic_prefix())

    async def save(detection: Detection) -> bool:
        created = await orm.call(store.save_detection, detection)
        saved.record((detection.event_id, created))
        return created

    async with running_stack(
        broker_url,
        lambda clock, report, hub: FrigateClient(
            settings, clock=clock, report=report, mqtt=hub, store=save
        ),
    ) as stack:
        prefix = settings.topic_prefix
        await stack.subscribed(f"{prefix}/available", f"{prefix}/events")
        yield stack


def event(kind: str, **after: Any) -> str:
    base = {"id": "1750000000.5-abc", "camera": "driveway", "label": "car", "top_score": 0.71,
            "start_time": T0, "end_time": None, "entered_zones": []}  # fmt: skip
    return json.dumps({"type": kind, "before": {}, "after": {**base, **after}})


async def publish(publisher: Publisher, topic: str, payload: str) -> None:
    await asyncio.to_thread(publisher.publish, topic, payload)


@pytest.mark.django_db(transaction=True)
async def test_detections_are_stored_and_updates_merge(
    frigate: Stack, publisher: Publisher, orm: AsyncStore, saved: Saved
) -> None:
    prefix = frigate.layer.settings.topic_prefix
    await publish(publisher, f"{prefix}/events", event("new", entered_zones=["street"]))
    await publish(
        publisher, f"{prefix}/events",
        event("update", top_score=0.93, entered_zones=["street", "gate"], has_snapshot=True),
    )  # fmt: skip
    await publish(
        publisher, f"{prefix}/events", event("end", top_score=0.8, end_time=T0 + 12, has_clip=True)
    )
    await publish(publisher, f"{prefix}/events", event("new", id="other", label="person"))
    await saved.wait_count(4)
    assert [created for _, created in saved.calls] == [True, False, False, True]
    rows = await orm.call(lambda: list(FrigateDetection.objects.order_by("event_id").values()))
    assert [r["event_id"] for r in rows] == ["1750000000.5-abc", "other"]
    car = rows[0]
    assert (car["camera"], car["label"], car["score"]) == ("driveway", "car", 0.93)
    assert car["zones"] == ["street", "gate"]
    assert car["started_at"] == datetime.fromtimestamp(T0, tz=UTC)
    assert car["ended_at"] == datetime.fromtimestamp(T0 + 12, tz=UTC)
    assert (car["has_snapshot"], car["has_clip"]) == (False, True)  # the latest flags
    assert frigate.layer.health()["detections_written"] == 4


async def test_availability_is_reported_on_transitions_only(
    frigate: Stack, publisher: Publisher
) -> None:
    prefix = frigate.layer.settings.topic_prefix
    for payload in ("online", "online", "garbage", "offline", "offline", "online"):
        await publish(publisher, f"{prefix}/available", payload)
    await frigate.report.wait_for_event("available", 2, integration="frigate")
    assert frigate.report.events("frigate") == ["available", "unavailable", "available"]
    assert frigate.layer.health()["malformed"] == {"wrong_type": 1}


@pytest.mark.django_db
def test_the_cleanup_deletes_detections_older_than_the_retention() -> None:
    slot = timezone.now()
    old = FrigateDetection.objects.create(event_id="old", camera="c", label="l")
    fresh = FrigateDetection.objects.create(event_id="fresh", camera="c", label="l")
    FrigateDetection.objects.filter(pk=old.pk).update(updated_at=slot - timedelta(days=15))
    FrigateDetection.objects.filter(pk=fresh.pk).update(updated_at=slot - timedelta(days=13))
    result = cleanup_frigate_detections(slot)
    assert result["deleted"] == 1 and result["retention_days"] == 14
    assert list(FrigateDetection.objects.values_list("event_id", flat=True)) == ["fresh"]
    set_value(FRIGATE_DETECTIONS_RETENTION.key, 0)
    assert cleanup_frigate_detections(slot + timedelta(days=30))["skipped"] == "retention disabled"
    assert FrigateDetection.objects.count() == 1


def test_the_cleanup_is_registered_hourly() -> None:
    from services.registry import discover
    from services.schedules import Cron

    spec = discover().get("cleanup_frigate_detections")
    assert spec.schedule == Cron("10 * * * *") and "maintenance" in spec.tags
