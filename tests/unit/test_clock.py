from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from services.clock import FakeClock, RealClock

START = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
TIMEOUT = 2.0  # a safety net for awaits that must complete; never a synchronisation point


async def settle() -> None:
    """Let every ready callback run (futures resolved by advance() resume their awaiters)."""
    for _ in range(10):
        await asyncio.sleep(0)


# --- FakeClock ---------------------------------------------------------------------------------


def test_fake_clock_starts_where_told_and_advances_both_clocks() -> None:
    clock = FakeClock(START)
    assert clock.now() == START
    assert clock.monotonic() == 0.0
    clock.advance(90)
    assert clock.now() == START + timedelta(seconds=90)
    assert clock.monotonic() == 90.0


def test_fake_clock_default_start_is_aware_utc() -> None:
    assert FakeClock().now().utcoffset() == timedelta(0)


async def test_advance_wakes_sleepers_in_order_and_not_before_their_time() -> None:
    clock = FakeClock(START)
    woke: list[str] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append(name)

    tasks = [
        asyncio.create_task(sleeper("c", 30)),
        asyncio.create_task(sleeper("a", 10)),
        asyncio.create_task(sleeper("b", 20)),
        asyncio.create_task(sleeper("b2", 20)),
    ]
    await settle()
    assert clock.sleepers == 4

    clock.advance(9.999)
    await settle()
    assert woke == []

    clock.advance(0.001)  # exactly at 10 s
    await settle()
    assert woke == ["a"]

    clock.advance(25)  # passes 20 and 30 in one step: still in deadline order
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=TIMEOUT)
    assert woke == ["a", "b", "b2", "c"]
    assert clock.sleepers == 0


async def test_sleep_zero_or_negative_returns_without_advance() -> None:
    clock = FakeClock(START)
    await asyncio.wait_for(clock.sleep(0), timeout=TIMEOUT)
    await asyncio.wait_for(clock.sleep(-5), timeout=TIMEOUT)
    assert clock.sleepers == 0


async def test_sleep_until_returns_on_deadline() -> None:
    clock = FakeClock(START)
    wake = asyncio.Event()
    waiter = asyncio.create_task(clock.sleep_until(START + timedelta(seconds=60), wake))
    await settle()
    clock.advance(59)
    await settle()
    assert not waiter.done()
    clock.advance(1)
    await asyncio.wait_for(waiter, timeout=TIMEOUT)
    assert clock.sleepers == 0


async def test_sleep_until_returns_on_wake_and_drops_its_timer() -> None:
    clock = FakeClock(START)
    wake = asyncio.Event()
    waiter = asyncio.create_task(clock.sleep_until(START + timedelta(hours=1), wake))
    await settle()
    assert clock.sleepers == 1
    wake.set()
    await asyncio.wait_for(waiter, timeout=TIMEOUT)
    await settle()
    assert clock.sleepers == 0


async def test_sleep_until_without_deadline_waits_for_wake_only() -> None:
    clock = FakeClock(START)
    wake = asyncio.Event()
    waiter = asyncio.create_task(clock.sleep_until(None, wake))
    await settle()
    clock.advance(10**6)
    await settle()
    assert not waiter.done()
    wake.set()
    await asyncio.wait_for(waiter, timeout=TIMEOUT)


@pytest.mark.parametrize("offset", [0, -1, -3600])
async def test_sleep_until_deadline_now_or_past_returns_at_once(offset: int) -> None:
    clock = FakeClock(START)
    await asyncio.wait_for(
        clock.sleep_until(START + timedelta(seconds=offset), asyncio.Event()), timeout=TIMEOUT
    )


async def test_sleep_until_with_wake_already_set_returns_at_once() -> None:
    clock = FakeClock(START)
    wake = asyncio.Event()
    wake.set()
    await asyncio.wait_for(clock.sleep_until(START + timedelta(hours=1), wake), timeout=TIMEOUT)
    assert clock.sleepers == 0


async def test_jump_wall_moves_now_but_not_monotonic_and_wakes_no_sleeper() -> None:
    clock = FakeClock(START)
    wake = asyncio.Event()
    sleeping = asyncio.create_task(clock.sleep(60))
    until = asyncio.create_task(clock.sleep_until(START + timedelta(seconds=60), wake))
    await settle()

    clock.jump_wall(3600)
    await settle()
    assert clock.now() == START + timedelta(hours=1)
    assert clock.monotonic() == 0.0
    assert not sleeping.done()
    assert not until.done()  # a wall step never fires a timer early

    clock.advance(60)
    await asyncio.wait_for(asyncio.gather(sleeping, until), timeout=TIMEOUT)
    assert clock.now() == START + timedelta(hours=1, seconds=60)
    assert clock.monotonic() == 60.0


async def test_jump_wall_backwards() -> None:
    clock = FakeClock(START)
    clock.jump_wall(-120)
    assert clock.now() == START - timedelta(seconds=120)
    assert clock.monotonic() == 0.0


async def test_cancelled_sleeper_is_not_counted_and_does_not_break_advance() -> None:
    clock = FakeClock(START)
    sleeping = asyncio.create_task(clock.sleep(10))
    other = asyncio.create_task(clock.sleep(10))
    await settle()
    sleeping.cancel()
    await settle()
    assert clock.sleepers == 1
    clock.advance(10)
    await asyncio.wait_for(other, timeout=TIMEOUT)
    assert sleeping.cancelled()


# --- RealClock ---------------------------------------------------------------------------------


def test_real_clock_now_is_aware_utc() -> None:
    now = RealClock().now()
    assert now.utcoffset() == timedelta(0)
    assert abs((now - datetime.now(UTC)).total_seconds()) < 5


async def test_real_clock_sleep_until_returns_at_once_when_wake_already_set() -> None:
    clock = RealClock()
    wake = asyncio.Event()
    wake.set()
    far = clock.now() + timedelta(days=1)
    await asyncio.wait_for(clock.sleep_until(far, wake), timeout=TIMEOUT)


@pytest.mark.parametrize("offset", [0, -1, -86400])
async def test_real_clock_sleep_until_past_deadline_returns_at_once(offset: int) -> None:
    clock = RealClock()
    deadline = clock.now() + timedelta(seconds=offset)
    await asyncio.wait_for(clock.sleep_until(deadline, asyncio.Event()), timeout=TIMEOUT)


@pytest.mark.parametrize("far", [timedelta(days=1), None])
async def test_real_clock_sleep_until_wakes_promptly_when_set_later(far: timedelta | None) -> None:
    clock = RealClock()
    wake = asyncio.Event()
    deadline = None if far is None else clock.now() + far
    waiter = asyncio.create_task(clock.sleep_until(deadline, wake))
    await asyncio.sleep(0)
    assert not waiter.done()  # really waiting: it did not return on its own
    asyncio.get_running_loop().call_soon(wake.set)
    await asyncio.wait_for(waiter, timeout=TIMEOUT)


async def test_real_clock_sleep_until_caps_one_wait_at_max_sleep() -> None:
    clock = RealClock(max_sleep=0.01)
    far = clock.now() + timedelta(days=1)
    # a day away, but one wait lasts at most max_sleep: the caller then re-reads now()
    await asyncio.wait_for(clock.sleep_until(far, asyncio.Event()), timeout=TIMEOUT)
