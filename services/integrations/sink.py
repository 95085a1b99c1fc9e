"""An ordered queue between MQTT callbacks (sync, on the loop) and async writers (entity states,
detections): one call at a time, in arrival order, so a sensor's "open" never overtakes its
"closed". Bounded: past ``limit`` waiting items new ones are counted as dropped and logged, so a
flood cannot grow the worker's memory without end. A failing call is logged and counted; the
next one still runs.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from services.integrations.payloads import malformed_log
from services.ratelimit_log import RateLimitedLog


class OrderedSink[T]:
    def __init__(
        self,
        name: str,
        deliver: Callable[[T], Awaitable[Any]],
        errors: RateLimitedLog,
        *,
        limit: int = 10_000,
    ) -> None:
        self.name = name
        self._deliver = deliver
        self._errors = errors
        self._limit = limit
        self._queue: deque[T] = deque()
        self._ready = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self.delivered = 0
        self._failures = malformed_log(
            logging.getLogger(__name__), name, errors.monotonic,
            event="integrations.delivery_failed", what="delivery failed",
        )  # fmt: skip

    def put(self, item: T) -> bool:
        if len(self._queue) >= self._limit:
            self._errors.record("dropped_overflow", f"{self.name}: more than {self._limit} waiting")
            return False
        self._queue.append(item)
        self._idle.clear()
        self._ready.set()
        return True

    @property
    def failed(self) -> int:
        return self._failures.total

    @property
    def waiting(self) -> int:
        return len(self._queue)

    async def wait_idle(self) -> None:
        """Until everything put so far is delivered (tests, and a graceful stop)."""
        await self._idle.wait()

    async def run(self) -> None:
        """Deliver items until cancelled; cancel only once ``wait_idle`` returned to lose none."""
        while True:
            await self._ready.wait()
            while self._queue:
                item = self._queue.popleft()
                try:
                    await self._deliver(item)
                    self.delivered += 1
                except asyncio.CancelledError:
                    self._queue.appendleft(item)  # not delivered: the next run gets it first
                    raise
                except Exception as exc:  # bounded logging: a database outage fails them all
                    self._failures.record(type(exc).__name__, str(exc))
            self._ready.clear()
            self._idle.set()
