"""Fast tasks for the acceptance tests and for .ci/run's embedded smoke test.

Loaded only when ``WORKER_TASK_MODULES=tests.acceptance.worker_tasks``. ``acceptance_tick``
fires every second; ``acceptance_slow`` works for ``ACCEPTANCE_SLOW_SECONDS`` (simulated work),
so a test can stop the worker while it runs.
"""

from __future__ import annotations

import asyncio
import logging
import os
from datetime import datetime
from pathlib import Path

from services.registry import task
from services.schedules import Every

logger = logging.getLogger(__name__)


@task(Every(1), tags=("acceptance",))
def acceptance_tick(slot: datetime) -> dict[str, str]:
    """Fires every second and reports its slot (and appends it to ACCEPTANCE_TICK_LOG)."""
    log = os.environ.get("ACCEPTANCE_TICK_LOG")
    if log:
        with Path(log).open("a") as handle:
            handle.write(f"{slot.isoformat()}\n")
    return {"slot": slot.isoformat()}


@task(Every(float(os.environ.get("ACCEPTANCE_SLOW_EVERY", "3600"))), tags=("acceptance",))
async def acceptance_slow(slot: datetime) -> dict[str, str]:
    """Works for ACCEPTANCE_SLOW_SECONDS, then reports its slot."""
    logger.info("slow task started", extra={"event": "acceptance.slow_started"})
    await asyncio.sleep(float(os.environ.get("ACCEPTANCE_SLOW_SECONDS", "2")))
    return {"slot": slot.isoformat()}
