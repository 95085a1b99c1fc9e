"""Claiming a batch of due runs from async code: predicates, one claim transaction, shielding.

The cron component hands over every slot due at one instant; they are claimed together (see
``services.claims``) so that tasks due in the same second start within milliseconds of it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime

from services.claims import Claim, ClaimRequest, claim_runs
from services.dbthread import AsyncStore
from services.execution import Executor
from services.registry import TaskSpec

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Due:
    spec: TaskSpec
    slot: datetime | None  # None: a manual run ("run now")
    source: str


async def claim_batch(
    db: AsyncStore, executor: Executor, now: datetime, due: list[Due]
) -> list[Claim | None]:
    """Claim ``due`` in one transaction; None where the task's ``enabled_when`` said no.

    The claim commits in the ORM thread even if shutdown cancels us while it runs; in that
    case the runs it won are closed as cancelled before the cancellation goes on.
    """
    claiming = asyncio.ensure_future(
        db.call(_claim_enabled, due, executor.worker_id, now, executor.lease_until())
    )
    try:
        return await asyncio.shield(claiming)
    except asyncio.CancelledError:
        claims = await claiming
        for item, claim in zip(due, claims, strict=True):
            if claim is not None and claim.outcome == "claimed" and claim.run_id is not None:
                await executor.record_cancelled(item.spec, claim.run_id)
        raise


def _claim_enabled(
    due: list[Due], worker_id: str, now: datetime, lease_until: datetime
) -> list[Claim | None]:
    enabled = [is_enabled(item.spec) for item in due]
    requests = [_request(item) for item, ok in zip(due, enabled, strict=True) if ok]
    claims = iter(claim_runs(requests, worker_id=worker_id, now=now, lease_until=lease_until))
    return [next(claims) if ok else None for ok in enabled]


def _request(item: Due) -> ClaimRequest:
    schedule = item.spec.schedule
    next_run = schedule.next_slot(item.slot) if schedule and item.slot else None
    return ClaimRequest(item.spec.name, item.slot, item.source, item.spec.overlap, next_run)


def is_enabled(spec: TaskSpec) -> bool:
    """What the task's enabled_when says; False (logged) when it raises. ORM thread."""
    if spec.enabled_when is None:
        return True
    try:
        enabled = spec.is_enabled()
    except Exception:
        logger.exception(
            "enabled_when failed", extra={"event": "cron.enabled_failed", "task": spec.name}
        )
        return False
    if not enabled:
        logger.debug("task disabled", extra={"event": "cron.disabled", "task": spec.name})
    return enabled
