"""The status table: the hub's writes (one transaction per change) and the snapshot reads.

Every status write takes one transaction-scoped advisory lock first, and numbers the change
inside it past the largest number in the table. So numbers follow commit order even when
two workers hold different integrations, each write reads every row back as it is after
its own change (the payload pushed is the whole table), and a snapshot's number (the
table's largest) covers exactly the changes it shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction
from django.db.models import Max

from realtime import sequence
from realtime.models import IntegrationStatusRecord
from realtime.status import INTEGRATIONS, IntegrationStatus

# pg_advisory_xact_lock key: "realtime status" as a stable 64-bit number.
STATUS_LOCK = 0x7265616C74696D65


@dataclass(frozen=True)
class Stored:
    status: IntegrationStatus
    offline_reported: bool
    sequence: int


@dataclass(frozen=True)
class OfflineEvent:
    kind: str  # "integration_offline" | "integration_recovered"
    message: str
    data: dict[str, Any]


@dataclass(frozen=True)
class Written:
    sequence: int  # this change's number (unchanged when nothing visible changed)
    statuses: dict[str, IntegrationStatus]  # every row after the write


def load() -> dict[str, Stored]:
    """Every stored integration, for the hub at start."""
    found = {}
    for record in IntegrationStatusRecord.objects.filter(integration__in=INTEGRATIONS):
        found[record.integration] = Stored(
            to_status(record), record.offline_reported, record.sequence
        )
    if found:
        sequence.observe(max(s.sequence for s in found.values()))
    return found


def snapshot() -> tuple[int, dict[str, IntegrationStatus]]:
    """(number, statuses) of the committed table: the snapshot a WebSocket client gets."""
    records = list(IntegrationStatusRecord.objects.filter(integration__in=INTEGRATIONS))
    number = max((r.sequence for r in records), default=0)
    return number, {r.integration: to_status(r) for r in records}


def write(
    status: IntegrationStatus,
    *,
    offline_reported: bool,
    worker_id: str,
    visible: bool = True,
    events: Sequence[OfflineEvent] = (),
) -> Written:
    """Store one integration's status (and its offline/recovered events) in one transaction.

    ``visible``: the payload changed, so the change gets a new number and is pushed.
    """
    from alarm.models import AlarmEvent

    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [STATUS_LOCK])
        record = IntegrationStatusRecord.objects.filter(integration=status.integration).first()
        number = record.sequence if record is not None else 0
        if visible or record is None:
            floor = IntegrationStatusRecord.objects.aggregate(top=Max("sequence"))["top"] or 0
            number = sequence.next_sequence(floor)
        fields = from_status(status) | {
            "offline_reported": offline_reported,
            "worker_id": worker_id,
            "sequence": number,
        }
        IntegrationStatusRecord.objects.update_or_create(
            integration=status.integration, defaults=fields
        )
        for event in events:
            AlarmEvent.objects.create(event_type=event.kind, message=event.message, data=event.data)
        _, statuses = snapshot()
    return Written(number, statuses)


def to_status(record: IntegrationStatusRecord) -> IntegrationStatus:
    return IntegrationStatus(
        integration=record.integration,
        configured=record.configured,
        enabled=record.enabled,
        link=record.link,
        available=record.available,
        since=record.since,
        last_connect_at=record.last_connect_at,
        last_disconnect_at=record.last_disconnect_at,
        last_error=record.last_error or None,
        details=record.details if isinstance(record.details, dict) else {},
    )


def from_status(status: IntegrationStatus) -> dict[str, Any]:
    return {
        "configured": status.configured,
        "enabled": status.enabled,
        "link": status.link,
        "available": status.available,
        "state": status.state,
        "since": status.since,
        "last_connect_at": status.last_connect_at,
        "last_disconnect_at": status.last_disconnect_at,
        "last_error": status.last_error or "",
        "details": dict(status.details),
    }
