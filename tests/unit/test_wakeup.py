from __future__ import annotations

import asyncio
import os
import time
from datetime import timedelta

import pytest

from alarm import wakeup
from alarm.wakeup import PreciseSleeper
from services.clock import RealClock

TIMEOUT = 2.0  # a safety net for awaits that must complete; never a synchronisation point

pytestmark = pytest.mark.skipif(not wakeup.available(), reason="needs os.timerfd_create (Linux)")


async def test_returns_at_the_deadline_never_before() -> None:
    sleeper = PreciseSleeper(RealClock())
    try:
        began = time.monotonic()
        deadline = sleeper.clock.now() + timedelta(milliseconds=30)
        await asyncio.wait_for(sleeper.sleep_until(deadline, asyncio.Event()), timeout=TIMEOUT)
        assert time.monotonic() - began >= 0.030
        assert sleeper.clock.now() >= deadline - timedelta(milliseconds=1)  # clocks' rounding
    finally:
        sleeper.close()


@pytest.mark.parametrize("far", [timedelta(days=1), None])
async def test_a_wake_up_ends_the_wait(far: timedelta | None) -> None:
    sleeper = PreciseSleeper(RealClock())
    wake = asyncio.Event()
    deadline = None if far is None else sleeper.clock.now() + far
    waiter = asyncio.create_task(sleeper.sleep_until(deadline, wake))
    await asyncio.sleep(0)
    assert not waiter.done()
    asyncio.get_running_loop().call_soon(wake.set)
    await asyncio.wait_for(waiter, timeout=TIMEOUT)
    sleeper.close()


@pytest.mark.parametrize("offset", [0, -1, -86400])
async def test_a_past_deadline_or_a_set_wake_returns_at_once(offset: int) -> None:
    sleeper = PreciseSleeper(RealClock())
    deadline = sleeper.clock.now() + timedelta(seconds=offset)
    await asyncio.wait_for(sleeper.sleep_until(deadline, asyncio.Event()), timeout=TIMEOUT)
    woken = asyncio.Event()
    woken.set()
    far = sleeper.clock.now() + timedelta(days=1)
    await asyncio.wait_for(sleeper.sleep_until(far, woken), timeout=TIMEOUT)
    sleeper.close()


async def test_the_timerfd_is_reused_and_closed() -> None:
    sleeper = PreciseSleeper(RealClock())
    for _ in range(3):
        soon = sleeper.clock.now() + timedelta(milliseconds=1)
        await asyncio.wait_for(sleeper.sleep_until(soon, asyncio.Event()), timeout=TIMEOUT)
    fd = sleeper._fd
    assert fd is not None
    sleeper.close()
    with pytest.raises(OSError):
        os.fstat(fd)
