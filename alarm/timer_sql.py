"""The alarm timers' SQL on the component's own psycopg async connections (autocommit).

Two statements: LOAD reads every scheduled row of the three timer tables (at start and after
every reconnect of the listener); FIRE_ACTIONS takes a batch of due pending actions in ONE
statement (so in one transaction): it locks the rows still scheduled no later than the due
time the worker waited for (``FOR UPDATE``, in id order, so replicas neither deadlock nor fire
twice: a replica that waits for a row another one holds finds it no longer scheduled once
that one commits), cancels the stale ones (the policy in ``alarm.timer_policy``) and those of
disabled rules, fires the ``emit_event`` ones (the event row and the final state in the same
statement) and leaves every other action for the ORM path (``alarm.timer_store``), which
runs it through the same code as immediate actions (``enqueue``, the panel).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection

LOAD = """
SELECT 'runtime', id, scheduled_for FROM alarm_ruleruntime WHERE status = 'scheduled'
UNION ALL
SELECT 'action', id, fire_at FROM alarm_pendingaction WHERE status = 'scheduled'
UNION ALL
SELECT 'alarm', id, delay_until FROM alarm_alarmstate WHERE delay_until IS NOT NULL
"""

# The event written here must match alarm.action_runner.event_fields() (tested).
FIRE_ACTIONS = """
WITH k (id, due, late) AS (
    SELECT * FROM unnest(%(ids)s::bigint[], %(dues)s::timestamptz[], %(lates)s::float8[])
), due AS (
    SELECT a.id, a.action, a.rule_id, k.late,
        CASE
            WHEN a.status <> 'scheduled' THEN 'gone'  -- fired or cancelled meanwhile
            WHEN a.fire_at > k.due THEN 'moved'  -- rescheduled later: its NOTIFY re-heaps it
            WHEN a.rule_id IS NOT NULL AND r.enabled IS NOT TRUE THEN 'disabled'
            WHEN k.late > %(stale_after)s THEN 'stale'
            WHEN a.action ->> 'type' = 'emit_event'
                AND jsonb_typeof(a.action -> 'message') = 'string'
                AND coalesce(jsonb_typeof(a.action -> 'data'), 'object') = 'object'
                THEN 'fire'
            ELSE 'orm'
        END AS verdict
    FROM alarm_pendingaction AS a
    JOIN k ON k.id = a.id
    LEFT JOIN alarm_rule AS r ON r.id = a.rule_id
    -- The primary key is the only way in: with "status = 'scheduled'" here, a table without
    -- statistics yet (a fresh install) gets a plan through the partial index of scheduled
    -- rows, scanning them all per fire. The status and due checks are in the CASE above,
    -- computed on the row as locked (after waiting for a replica that holds it, its latest
    -- version), so a row another replica fired meanwhile is 'gone'.
    WHERE a.id = ANY(%(ids)s::bigint[])
    ORDER BY a.id
    FOR UPDATE OF a
), done AS (
    UPDATE alarm_pendingaction AS p
    SET status = CASE due.verdict WHEN 'fire' THEN 'fired' ELSE 'cancelled' END,
        finished_at = %(now)s,
        fired_by = CASE due.verdict WHEN 'fire' THEN %(worker)s ELSE '' END,
        reason = CASE due.verdict
            WHEN 'stale' THEN 'stale: ' || round(due.late::numeric) || ' s late (no worker ran '
                || 'when it was due)'
            WHEN 'disabled' THEN 'rule disabled or deleted'
            ELSE '' END
    FROM due
    WHERE p.id = due.id AND due.verdict IN ('fire', 'stale', 'disabled')
    RETURNING p.id
), events AS (
    INSERT INTO alarm_alarmevent
        (event_type, state_from, state_to, message, data, timestamp, entity_id)
    SELECT 'rule_fired', '', '', due.action ->> 'message',
        coalesce(due.action -> 'data', '{}'::jsonb)
            || jsonb_build_object('rule', due.rule_id, 'pending_action', due.id),
        clock_timestamp(), NULL
    FROM due
    WHERE due.verdict = 'fire'
    RETURNING id
)
SELECT due.id, due.verdict FROM due WHERE due.verdict NOT IN ('gone', 'moved')
"""


@dataclass(frozen=True)
class Scheduled:
    kind: str
    id: int
    due: datetime


async def load(conn: AsyncConnection[Any]) -> list[Scheduled]:
    cursor = await conn.execute(LOAD)
    return [Scheduled(kind, row_id, due) for kind, row_id, due in await cursor.fetchall()]


async def fire_actions(
    conn: AsyncConnection[Any],
    items: list[tuple[int, datetime, float]],
    *,
    now: datetime,
    worker: str,
    stale_after: float,
) -> dict[int, str]:
    """Take the due pending actions ``(id, due, late)``; returns each taken row's verdict.

    ``late``: seconds since the deadline the worker waited for, by elapsed time (a wall-clock
    step is not lateness); more than ``stale_after`` and the row is cancelled as stale.

    ``fire``: fired here; ``stale`` / ``disabled``: cancelled here; ``orm``: still scheduled,
    for the ORM path. A row not returned was not taken (fired or cancelled already, or moved
    later: its NOTIFY puts it back on the heap).
    """
    params = {
        "ids": [row_id for row_id, _, _ in items],
        "dues": [due for _, due, _ in items],
        "lates": [late for _, _, late in items],
        "now": now,
        "worker": worker,
        "stale_after": stale_after,
    }
    cursor = await conn.execute(FIRE_ACTIONS, params)
    return {row_id: verdict for row_id, verdict in await cursor.fetchall()}
