"""Fast tasks for the acceptance tests and for .ci/run's embedded smoke test.

Loaded only when ``WORKER_TASK_MODULES=tests.acceptance.worker_tasks``. ``acceptance_tick``
fires every second; ``acceptance_slow`` works for ``ACCEPTANCE_SLOW_SECONDS`` (simulated work),
so a test can stop the worker while it runs.
"""

from __future__ import annotations

import asyncio
import os
from datetime import datetime

from services.registry import task
from services.schedules import Every


@task(Every(1), tags=("acceptance",))
def acceptance_tick(slot: datetime) -> dict[str, str]:
    """Fires every second and reports its slot."""
    return {"slot": slot.isoformat()}


@task(Every(float(os.environ.get("ACCEPTANCE_SLOW_EVERY", "3600"))), tags=("acceptance",))
async def acceptance_slow(slot: datetime) -> dict[str, str]:
    """Works for ACCEPTANCE_SLOW_SECONDS, then reports its slot."""
    await asyncio.sleep(float(os.environ.get("ACCEPTANCE_SLOW_SECONDS", "2")))
    return {"slot": slot.isoformat()}
