"""The outbox's SQL, run on the dispatcher's own psycopg async connections (autocommit).

Claim: ONE statement moves a batch of due rows to ``sending`` under a lease, skipping rows
other workers hold (``FOR UPDATE SKIP LOCKED``), and returns them with their provider and the
earliest time anything else comes due (so no second query is needed to know how long to
sleep). Due rows are pending rows whose time has come and ``sending`` rows whose lease ran out
(their worker died mid-send); a reclaimed row counts the lost attempt. Results are written back
in batches, on a connection of their own so that claims never wait behind them: one statement
updates the rows still leased by this worker and logs every attempt.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection

CLAIM = """
WITH pending AS (
    SELECT id FROM notifications_notificationdelivery
    WHERE status = 'pending' AND next_attempt_at <= %(now)s
    ORDER BY next_attempt_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED
), expired AS (
    SELECT id FROM notifications_notificationdelivery
    WHERE status = 'sending' AND locked_until < %(now)s
    ORDER BY locked_until LIMIT %(limit)s FOR UPDATE SKIP LOCKED
), due AS (
    SELECT id FROM pending UNION ALL SELECT id FROM expired LIMIT %(limit)s
), claimed AS (
    UPDATE notifications_notificationdelivery AS d
    SET status = 'sending', locked_by = %(worker)s, locked_until = %(lease_until)s,
        attempts = d.attempts + 1, last_attempt_at = %(now)s, updated_at = %(now)s
    WHERE d.id = ANY(ARRAY(SELECT id FROM due))
    RETURNING d.id, d.provider_id, d.title, d.message, d.data, d.attempts, d.max_attempts,
              d.idempotency_key, d.next_attempt_at
), upcoming AS (
    -- The earliest time anything not claimed here comes due: a pending row's time, or the end
    -- of another worker's lease (ours end with the results we write; a timer on them would
    -- only wake an idle worker a lease after its last send). The statement's snapshot still
    -- shows the rows claimed above as they were, hence NOT IN due.
    SELECT LEAST(
        (SELECT min(next_attempt_at) FROM notifications_notificationdelivery
         WHERE status = 'pending' AND id NOT IN (SELECT id FROM due)),
        (SELECT min(locked_until) FROM notifications_notificationdelivery
         WHERE status = 'sending' AND locked_by <> %(worker)s AND id NOT IN (SELECT id FROM due))
    ) AS at
)
SELECT c.id, c.title, c.message, c.data, c.attempts, c.max_attempts, c.idempotency_key,
       p.id, p.name, p.type, p.enabled, p.config::text, u.at
FROM upcoming AS u
LEFT JOIN claimed AS c ON true
LEFT JOIN notifications_notificationprovider AS p ON p.id = c.provider_id
ORDER BY c.next_attempt_at
"""

# One row per result: (id, status, next_attempt_at, sent_at, error_code, error_message,
# attempt, outcome, http_status, duration_ms, provider_id, attempted). Only rows this worker
# still holds are written (a row reclaimed after our lease ran out belongs to its new holder):
# ``locked_by`` names a holder only while a row is ``sending`` (the claim sets it; results and
# requeues clear it). A row released unsent (``attempted`` false) gets its attempt back, keeps
# its last error and logs nothing. Planner-proofing: ``ids`` repeats the ids as an array, and the
# holder is told by ``locked_by`` rather than ``status = 'sending'``, so each row is looked up by
# its primary key; with that status test and stale statistics the planner scanned every row in
# ``sending`` instead (the partial lease index), and a burst made every write slower.
RECORD = """
WITH v (id, status, next_attempt_at, sent_at, error_code, error_message, attempt, outcome,
        http_status, duration_ms, provider_id, attempted) AS (
    SELECT * FROM jsonb_to_recordset(%(results)s::jsonb) AS r(
        id bigint, status text, next_attempt_at timestamptz, sent_at timestamptz,
        error_code text, error_message text, attempt int, outcome text, http_status int,
        duration_ms double precision, provider_id bigint, attempted boolean)
), updated AS (
    UPDATE notifications_notificationdelivery AS d
    SET status = v.status, next_attempt_at = COALESCE(v.next_attempt_at, d.next_attempt_at),
        sent_at = v.sent_at, attempts = d.attempts - (NOT v.attempted)::int,
        last_error_code = CASE WHEN v.attempted THEN v.error_code ELSE d.last_error_code END,
        last_error_message = CASE WHEN v.attempted THEN v.error_message
                                  ELSE d.last_error_message END,
        locked_by = '', locked_until = NULL, updated_at = %(now)s
    FROM v WHERE d.id = v.id AND d.id = ANY(%(ids)s::bigint[]) AND d.locked_by = %(worker)s
    RETURNING d.id
)
INSERT INTO notifications_notificationlog
    (delivery_id, provider_id, attempt, outcome, http_status, error_code, error_message,
     duration_ms, worker_id, created_at)
SELECT v.id, v.provider_id, v.attempt, v.outcome, v.http_status, v.error_code,
       v.error_message, v.duration_ms, %(worker)s, %(now)s
FROM v WHERE v.attempted AND v.id IN (SELECT id FROM updated)
"""


@dataclass(frozen=True)
class ClaimedDelivery:
    """A claimed row and its provider (None fields when the provider was deleted); CLAIM order."""

    id: int
    title: str
    message: str
    data: Any
    attempt: int
    max_attempts: int
    idempotency_key: str
    provider_id: int | None
    provider_name: str | None
    provider_type: str | None
    provider_enabled: bool | None
    provider_config: str | None  # the stored JSON text, secrets still encrypted


@dataclass(frozen=True)
class Result:
    delivery_id: int
    status: str  # sent | pending | dead
    outcome: str  # sent | retry | dead
    attempt: int
    provider_id: int | None
    next_attempt_at: datetime | None = None
    sent_at: datetime | None = None
    error_code: str = ""
    error_message: str = ""
    http_status: int | None = None
    duration_ms: float | None = None
    attempted: bool = True  # False: released unsent (see RECORD)

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.delivery_id,
            "status": self.status,
            "next_attempt_at": self.next_attempt_at.isoformat() if self.next_attempt_at else None,
            "sent_at": self.sent_at.isoformat() if self.sent_at else None,
            "error_code": self.error_code,
            "error_message": self.error_message[:2000],
            "attempt": self.attempt,
            "outcome": self.outcome,
            "http_status": self.http_status,
            "duration_ms": self.duration_ms,
            "provider_id": self.provider_id,
            "attempted": self.attempted,
        }


async def claim(
    conn: AsyncConnection[Any], *, worker: str, now: datetime, lease_until: datetime, limit: int
) -> tuple[list[ClaimedDelivery], datetime | None]:
    """Claim up to ``limit`` due rows; also the earliest time anything else comes due."""
    params = {"worker": worker, "now": now, "lease_until": lease_until, "limit": limit}
    cursor = await conn.execute(CLAIM, params)
    rows = await cursor.fetchall()
    upcoming = rows[0][-1] if rows else None
    return [ClaimedDelivery(*row[:-1]) for row in rows if row[0] is not None], upcoming


async def record(
    conn: AsyncConnection[Any], results: list[Result], *, worker: str, now: datetime
) -> None:
    payload = json.dumps([result.as_json() for result in results])
    ids = [result.delivery_id for result in results]
    await conn.execute(RECORD, {"results": payload, "ids": ids, "worker": worker, "now": now})
