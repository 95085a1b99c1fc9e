"""Time, injected: the real clock for the worker, a fake one for tests.

Two clocks are involved and kept apart on purpose: schedules are in wall time (``now()``),
waiting is in monotonic time (``asyncio`` timers), so a wall-clock jump never fires a timer
early. After a wait the caller re-reads ``now()`` and fires only what is really due.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current wall time, aware, in UTC."""

    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...

    async def sleep_until(self, deadline: datetime | None, wake: asyncio.Event) -> None:
        """Return at ``deadline`` (wall time) or as soon as ``wake`` is set, whichever is first.

        May return early (spuriously or at a cap): callers re-read ``now()`` and re-check.
        ``deadline=None`` waits for ``wake`` alone.
        """


class RealClock:
    """The system clock. ``max_sleep`` bounds one wait (see settings.WORKER_MAX_SLEEP)."""

    def __init__(self, max_sleep: float = 300.0) -> None:
        self.max_sleep = max_sleep

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(seconds, 0.0))

    async def sleep_until(self, deadline: datetime | None, wake: asyncio.Event) -> None:
        if wake.is_set():
            return
        timeout = None
        if deadline is not None:
            timeout = min(max((deadline - self.now()).total_seconds(), 0.0), self.max_sleep)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await wake.wait()


class FakeClock:
    """A clock that moves only when a test calls ``advance``; sleepers wake when it passes them."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2025, 1, 1, tzinfo=UTC)
        self._mono = 0.0
        self._seq = itertools.count()
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._sleeper_added: asyncio.Event | None = None

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        """Move both clocks forward and wake every sleeper whose time has come."""
        self._now += timedelta(seconds=seconds)
        self._mono += seconds
        while self._sleepers and self._sleepers[0][0] <= self._mono:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)

    def jump_wall(self, seconds: float) -> None:
        """Move only the wall clock (an NTP step or a manual change); monotonic time stays."""
        self._now += timedelta(seconds=seconds)

    @property
    def sleepers(self) -> int:
        return sum(1 for _, _, f in self._sleepers if not f.done())

    async def wait_for_sleepers(self, count: int) -> None:
        """Return once at least ``count`` coroutines sleep on this clock (tests sync on it)."""
        while self.sleepers < count:
            self._sleeper_added = self._sleeper_added or asyncio.Event()
            self._sleeper_added.clear()
            await self._sleeper_added.wait()

    def _sleeper(self, seconds: float) -> asyncio.Future[None]:
        """A future that ``advance`` resolves once ``seconds`` have passed from NOW.

        Registered at once, not when some task first runs: an ``advance`` right after a call
        must count from the time of the call.
        """
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if seconds <= 0:
            future.set_result(None)
            return future
        heapq.heappush(self._sleepers, (self._mono + seconds, next(self._seq), future))
        if self._sleeper_added is not None:
            self._sleeper_added.set()
        return future

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        await self._sleeper(seconds)

    async def sleep_until(self, deadline: datetime | None, wake: asyncio.Event) -> None:
        if wake.is_set():
            return
        waiters: list[asyncio.Future[Any]] = [asyncio.ensure_future(wake.wait())]
        if deadline is not None:
            waiters.append(self._sleeper((deadline - self._now).total_seconds()))
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
