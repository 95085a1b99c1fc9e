"""Waking at a deadline to the tenth of a millisecond, for the alarm's timer component (Linux).

asyncio's selector loop turns the time to its next timer into an epoll timeout in whole
milliseconds, rounded up, so a ``call_at`` wakes 0-1 ms late (0.5 ms on average) before any
work starts. A timerfd (CLOCK_MONOTONIC, nanoseconds) watched with ``add_reader`` makes epoll
return at the deadline itself. Same contract as ``Clock.sleep_until``: returns at the
deadline or as soon as ``wake`` is set, may return early, and the caller re-reads the clock.
Where timerfd is missing (Python < 3.13, not Linux) ``available()`` is False and the
component uses the clock's own ``sleep_until``.
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import datetime
from typing import Any

from services.clock import RealClock

# The timerfd functions are new in Python 3.13; the project supports 3.12 (and type-checks as
# 3.12), so they are looked up at run time.
_os: Any = os


def available() -> bool:
    return hasattr(_os, "timerfd_create")


class PreciseSleeper:
    """``sleep_until`` of a RealClock, waking on a timerfd. One per component (one fd)."""

    def __init__(self, clock: RealClock) -> None:
        self.clock = clock
        self._fd: int | None = None

    async def sleep_until(self, deadline: datetime | None, wake: asyncio.Event) -> None:
        if wake.is_set():
            return
        if deadline is None:
            await self.clock.sleep_until(None, wake)
            return
        timeout = min((deadline - self.clock.now()).total_seconds(), self.clock.max_sleep)
        if timeout <= 0:
            return
        fd = self._timerfd()
        loop = asyncio.get_running_loop()
        rang: asyncio.Future[None] = loop.create_future()

        def on_readable() -> None:
            try:
                os.read(fd, 8)  # the expiration count; clears readiness
            except BlockingIOError:
                return
            if not rang.done():
                rang.set_result(None)

        _os.timerfd_settime(fd, initial=timeout)
        loop.add_reader(fd, on_readable)
        woken: asyncio.Future[Any] = asyncio.ensure_future(wake.wait())
        waiters: set[asyncio.Future[Any]] = {rang, woken}
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            loop.remove_reader(fd)
            _os.timerfd_settime(fd, initial=0)  # disarm
            woken.cancel()

    def _timerfd(self) -> int:
        if self._fd is None:
            flags = _os.TFD_NONBLOCK | _os.TFD_CLOEXEC
            self._fd = int(_os.timerfd_create(time.CLOCK_MONOTONIC, flags=flags))
        return self._fd

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
