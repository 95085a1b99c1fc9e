"""The snapshots a WebSocket client gets on connect, as client messages. Sync (ORM) code.

Each snapshot is numbered so that a push it races can be told apart: ``system_status`` takes
the largest number in the status table (every change up to it is in the rows it read, see
``realtime.store``); ``alarm_state`` takes a fresh number BEFORE reading, so any alarm change
committed after the read is pushed with a larger number (``realtime.sequence``).

The alarm state comes from ``alarm.services.alarm_state_snapshot``;
``set_alarm_snapshot_source`` replaces it (tests). When it fails, the client gets
``payload: null`` and the failure is logged, rather than no connection at all.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from realtime import broadcast, sequence, store
from realtime.status import system_status_payload
from services.ratelimit_log import RateLimitedLog

logger = logging.getLogger(__name__)
_log = RateLimitedLog(logger)

AlarmSnapshotSource = Callable[[], dict[str, Any]]


def _alarm_services_snapshot() -> dict[str, Any]:
    from alarm.services import alarm_state_snapshot

    snapshot: dict[str, Any] = alarm_state_snapshot()
    return snapshot


_alarm_source: AlarmSnapshotSource = _alarm_services_snapshot


def set_alarm_snapshot_source(source: AlarmSnapshotSource | None) -> AlarmSnapshotSource:
    """Use ``source`` for alarm snapshots (None: the alarm app's); returns the previous one."""
    global _alarm_source
    previous = _alarm_source
    _alarm_source = source or _alarm_services_snapshot
    return previous


def alarm_state_message() -> dict[str, Any]:
    number = sequence.next_sequence()  # before the read: see the module docstring
    try:
        payload: dict[str, Any] | None = _alarm_source()
    except Exception as exc:
        payload = None
        _log.record(
            "realtime.alarm_snapshot_failed", "alarm state snapshot failed", error=repr(exc)
        )
    return broadcast.message("alarm_state", payload, sequence=number)


def system_status_message() -> dict[str, Any]:
    number, statuses = store.snapshot()
    return broadcast.message("system_status", system_status_payload(statuses), sequence=number)
