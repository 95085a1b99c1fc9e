"""cleanup_notification_deliveries and cleanup_notification_logs against real PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from notifications.models import NotificationDelivery, NotificationLog
from notifications.tasks import cleanup_notification_deliveries, cleanup_notification_logs
from services.registry import discover
from services.runtime_settings import set_value
from services.schedules import DailyAt

pytestmark = pytest.mark.django_db

# Far from "now": a cutoff measured from the clock instead of the slot would delete more.
SLOT = datetime(2025, 1, 15, 3, 0, tzinfo=UTC)
DAY = timedelta(days=1)
SECOND = timedelta(seconds=1)
DELIVERIES_DAYS = "retention.notification_deliveries_days"
LOGS_DAYS = "retention.notification_logs_days"


def delivery(status: str, updated_at: datetime) -> NotificationDelivery:
    row = NotificationDelivery.objects.create(message=f"{status} {updated_at}", status=status)
    # auto_now would overwrite it on save(); update() writes exactly what we say.
    NotificationDelivery.objects.filter(pk=row.pk).update(updated_at=updated_at)
    return row


def log(at: datetime, of: NotificationDelivery | None = None) -> NotificationLog:
    of = of or delivery("pending", SLOT)
    return NotificationLog.objects.create(delivery=of, attempt=1, outcome="retry", created_at=at)


def survivors(rows: dict[str, NotificationDelivery]) -> set[str]:
    alive = set(NotificationDelivery.objects.values_list("pk", flat=True))
    return {name for name, row in rows.items() if row.pk in alive}


@pytest.mark.parametrize("override_days", [None, 7])
def test_finished_deliveries_older_than_the_retention_go(override_days: int | None) -> None:
    if override_days is not None:
        set_value(DELIVERIES_DAYS, override_days)
    days = override_days or 30
    cutoff = SLOT - days * DAY
    rows = {
        "sent-old": delivery("sent", cutoff - SECOND),
        "dead-old": delivery("dead", cutoff - 400 * DAY),
        "sent-at-cutoff": delivery("sent", cutoff),
        "dead-new": delivery("dead", cutoff + SECOND),
        "sent-after-slot": delivery("sent", SLOT + DAY),
        "pending-old": delivery("pending", cutoff - 400 * DAY),
        "sending-old": delivery("sending", cutoff - 400 * DAY),
    }

    result = cleanup_notification_deliveries(slot=SLOT)

    assert result == {"deleted": 2, "cutoff": cutoff.isoformat(), "retention_days": days}
    assert survivors(rows) == set(rows) - {"sent-old", "dead-old"}


def test_a_deleted_delivery_takes_its_logs_along() -> None:
    old = delivery("dead", SLOT - 31 * DAY)
    log(SLOT - DAY, of=old)
    cleanup_notification_deliveries(slot=SLOT)
    assert not NotificationLog.objects.exists()


@pytest.mark.parametrize("override_days", [None, 3])
def test_logs_older_than_the_retention_go(override_days: int | None) -> None:
    if override_days is not None:
        set_value(LOGS_DAYS, override_days)
    days = override_days or 30
    cutoff = SLOT - days * DAY
    old = [log(cutoff - SECOND), log(cutoff - 400 * DAY)]
    kept = [log(cutoff), log(cutoff + SECOND), log(SLOT + DAY)]

    result = cleanup_notification_logs(slot=SLOT)

    assert result == {"deleted": 2, "cutoff": cutoff.isoformat(), "retention_days": days}
    assert set(NotificationLog.objects.values_list("pk", flat=True)) == {row.pk for row in kept}
    assert all(NotificationDelivery.objects.filter(pk=row.delivery_id).exists() for row in old)


@pytest.mark.parametrize(
    ("cleanup", "key"),
    [(cleanup_notification_deliveries, DELIVERIES_DAYS), (cleanup_notification_logs, LOGS_DAYS)],
)
@pytest.mark.parametrize("disabled_days", [0, -1])
def test_zero_or_less_disables(
    cleanup: Callable[..., dict[str, Any]], key: str, disabled_days: int
) -> None:
    set_value(key, disabled_days)
    ancient = SLOT - 1000 * DAY
    log(ancient, of=delivery("sent", ancient))

    assert cleanup(slot=SLOT) == {"skipped": "retention disabled", "setting": key}
    assert (NotificationDelivery.objects.count(), NotificationLog.objects.count()) == (1, 1)


@pytest.mark.parametrize(
    ("name", "schedule"),
    [
        ("cleanup_notification_logs", DailyAt(3, 5)),
        ("cleanup_notification_deliveries", DailyAt(3, 7)),
    ],
)
def test_the_tasks_are_registered_daily(name: str, schedule: DailyAt) -> None:
    spec = discover().get(name)
    assert spec.schedule == schedule
    assert "maintenance" in spec.tags
