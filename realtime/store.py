"""The status table: the hub's writes (one transaction per change) and the snapshot reads.

Every status write takes one transaction-scoped advisory lock first, and numbers the change
inside it past the largest number in the table (read under the lock). So numbers follow
commit order even when two workers hold different integrations; each write reads every row
back as it is after its own change (the payload pushed is the whole table); and a snapshot's
number (the table's largest) covers exactly the changes it shows.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction
from django.utils import timezone
from psycopg.types.json import Jsonb

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

    ``visible``: the payload changed, so the change gets a new number (pushed by the caller);
    otherwise the row keeps its number. The write is on the way of every push, so a status
    alone goes to the server in one round trip (psycopg's pipeline mode: lock, upsert, read
    of every row, commit) and commits asynchronously (``synchronous_commit = off``): a status
    lost to a crash in the next fraction of a second is reported again at start. With
    offline/recovered events it goes through the ORM and commits durably.
    """
    connection.ensure_connection()
    if connection.in_atomic_block:
        raise RuntimeError("realtime.store.write runs its own transaction, not inside one")
    fields = from_status(status)
    params = {
        **fields,
        "integration": status.integration,
        "details": Jsonb(fields["details"]),
        "offline_reported": offline_reported,
        "worker_id": worker_id,
        "visible": visible,
        "number": sequence.next_sequence(),
        "now": timezone.now(),
    }
    number, found = _write_with_events(params, events) if events else _write_fast(params)
    sequence.observe(number)
    return Written(number, {row[0]: _status_from_row(row) for row in found})


def _write_fast(params: dict[str, Any]) -> tuple[int, list[Any]]:
    """The status alone: one round trip, asynchronous commit."""
    raw = connection.connection
    try:
        # Django's wrapper: psycopg's errors become django.db's, so that AsyncStore sees a
        # dead connection and replaces it.
        with connection.wrap_database_errors, raw.pipeline():
            raw.execute("BEGIN")
            raw.execute("SET LOCAL synchronous_commit TO OFF")
            raw.execute("SELECT pg_advisory_xact_lock(%s)", [STATUS_LOCK])
            upserted = raw.execute(_UPSERT, params)
            rows = raw.execute(_SELECT_ALL, [list(INTEGRATIONS)])
            raw.execute("COMMIT")
        return int(upserted.fetchone()[0]), rows.fetchall()
    except BaseException:
        with contextlib.suppress(Exception):
            raw.rollback()
        raise


def _write_with_events(
    params: dict[str, Any], events: Sequence[OfflineEvent]
) -> tuple[int, list[Any]]:
    """The status and its AlarmEvents (through the ORM), committed durably."""
    from alarm.models import AlarmEvent

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [STATUS_LOCK])
        cursor.execute(_UPSERT, params)
        number = int(cursor.fetchone()[0])
        AlarmEvent.objects.bulk_create(
            [AlarmEvent(event_type=e.kind, message=e.message, data=e.data) for e in events]
        )
        cursor.execute(_SELECT_ALL, [list(INTEGRATIONS)])
        return number, list(cursor.fetchall())


_COLUMNS = (
    "configured, enabled, link, available, state, since, last_connect_at, last_disconnect_at,"
    " last_error, details"
)
_UPSERT = f"""
INSERT INTO realtime_integrationstatusrecord
    (integration, {_COLUMNS}, offline_reported, worker_id, sequence, updated_at)
VALUES (%(integration)s, %(configured)s, %(enabled)s, %(link)s, %(available)s, %(state)s,
    %(since)s, %(last_connect_at)s, %(last_disconnect_at)s, %(last_error)s, %(details)s,
    %(offline_reported)s, %(worker_id)s,
    GREATEST(%(number)s, (SELECT coalesce(max(sequence), 0) + 1
                          FROM realtime_integrationstatusrecord)),
    %(now)s)
ON CONFLICT (integration) DO UPDATE SET
    configured = EXCLUDED.configured, enabled = EXCLUDED.enabled, link = EXCLUDED.link,
    available = EXCLUDED.available, state = EXCLUDED.state, since = EXCLUDED.since,
    last_connect_at = EXCLUDED.last_connect_at,
    last_disconnect_at = EXCLUDED.last_disconnect_at, last_error = EXCLUDED.last_error,
    details = EXCLUDED.details, offline_reported = EXCLUDED.offline_reported,
    worker_id = EXCLUDED.worker_id, updated_at = EXCLUDED.updated_at,
    sequence = CASE WHEN %(visible)s THEN EXCLUDED.sequence
                    ELSE realtime_integrationstatusrecord.sequence END
RETURNING sequence
"""
_SELECT_ALL = f"""
SELECT integration, {_COLUMNS} FROM realtime_integrationstatusrecord
WHERE integration = ANY(%s)
"""


def _status_from_row(row: Sequence[Any]) -> IntegrationStatus:
    (name, configured, enabled, link, available, _state, since, connect_at, disconnect_at,
     last_error, details) = row  # fmt: skip
    return IntegrationStatus(
        integration=name,
        configured=configured,
        enabled=enabled,
        link=link,
        available=available,
        since=since,
        last_connect_at=connect_at,
        last_disconnect_at=disconnect_at,
        last_error=last_error or None,
        details=details if isinstance(details, dict) else {},
    )


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
