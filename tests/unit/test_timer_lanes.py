"""FiringLanes: batches go to an idle lane at once, wait together when every lane is busy, and a
lane whose connection fails is not reused. Fake connections; each fire waits on an event the
test releases, so nothing sleeps."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest

from alarm.timer_lanes import FiringLanes


class FakeConn:
    def __init__(self, number: int) -> None:
        self.number = number
        self.closed = False

    async def close(self) -> None:
        self.closed = True


class Harness:
    """Records each fire as (connection number, items) and holds it until released."""

    def __init__(self, size: int, batch: int = 100) -> None:
        self.conns: list[FakeConn] = []
        self.fires: list[tuple[int, list[int]]] = []
        self.release: list[asyncio.Event] = []
        self.fail_next = False
        self.failures = 0
        self.started = asyncio.Event()
        self.lanes: FiringLanes[int] = FiringLanes(
            self.connect, self.fire, size=size, batch=batch, on_failure=self.on_failure
        )

    async def connect(self) -> Any:
        conn = FakeConn(len(self.conns))
        self.conns.append(conn)
        return conn

    async def fire(self, conn: Any, items: list[int]) -> None:
        self.fires.append((conn.number, list(items)))
        gate = asyncio.Event()
        self.release.append(gate)
        self.started.set()
        await gate.wait()
        if self.fail_next:
            self.fail_next = False
            raise psycopg.OperationalError("server closed the connection")

    def on_failure(self) -> None:
        self.failures += 1

    async def fires_started(self, count: int) -> None:
        async with asyncio.timeout(5):
            while len(self.fires) < count:
                self.started.clear()
                await self.started.wait()


async def test_a_batch_goes_to_an_idle_lane_at_once_and_the_next_to_the_other() -> None:
    h = Harness(size=2)
    await h.lanes.open()
    h.lanes.submit([1, 2])
    h.lanes.submit([3])
    await h.fires_started(2)
    assert sorted(items for _, items in h.fires) == [[1, 2], [3]]
    assert {number for number, _ in h.fires} == {0, 1}
    assert h.lanes.in_flight == 2
    for gate in h.release:
        gate.set()
    await h.lanes.settled()
    assert h.lanes.in_flight == 0 and h.lanes.statements == 2


async def test_items_due_while_every_lane_is_busy_leave_together_in_batches() -> None:
    h = Harness(size=1, batch=3)
    await h.lanes.open()
    h.lanes.submit([1])
    await h.fires_started(1)
    for item in (2, 3, 4, 5):
        h.lanes.submit([item])
    assert h.lanes.queued == 4 and len(h.fires) == 1
    h.release[0].set()
    await h.fires_started(2)
    assert h.fires[1] == (0, [2, 3, 4])
    h.release[1].set()
    await h.fires_started(3)
    assert h.fires[2] == (0, [5])
    h.release[2].set()
    await h.lanes.settled()
    assert h.lanes.queued == 0


async def test_the_warm_lane_is_used_again_at_low_load() -> None:
    h = Harness(size=2)
    await h.lanes.open()
    for item in range(3):
        h.lanes.submit([item])
        await h.fires_started(item + 1)
        h.release[item].set()
        await h.lanes.settled()
    assert len({number for number, _ in h.fires}) == 1


async def test_a_failed_lane_is_not_reused_and_reports_the_failure() -> None:
    h = Harness(size=2)
    await h.lanes.open()
    h.lanes.submit([1])
    await h.fires_started(1)
    h.fail_next = True
    h.release[0].set()
    await h.lanes.settled()
    assert isinstance(h.lanes.failure, psycopg.OperationalError)
    assert h.failures == 1
    h.lanes.submit([2])  # nothing more starts once a lane failed: the component restarts
    assert len(h.fires) == 1 and h.lanes.queued == 1


async def test_borrowed_waits_for_an_idle_lane_and_gives_it_back() -> None:
    h = Harness(size=1)
    await h.lanes.open()
    h.lanes.submit([1])
    await h.fires_started(1)
    borrowed = asyncio.ensure_future(h.lanes.borrowed().__aenter__())
    await asyncio.sleep(0)
    assert not borrowed.done()  # the only lane is busy
    h.release[0].set()
    conn = await asyncio.wait_for(borrowed, 5)
    assert conn is h.conns[0]


async def test_drain_drops_the_queue_and_close_closes_every_connection() -> None:
    h = Harness(size=1)
    await h.lanes.open()
    h.lanes.submit([1])
    await h.fires_started(1)
    h.lanes.submit([2])
    closing = asyncio.ensure_future(h.lanes.close())
    await asyncio.sleep(0)
    h.release[0].set()
    await asyncio.wait_for(closing, 5)
    assert [items for _, items in h.fires] == [[1]]  # queued rows stay scheduled in the table
    assert all(conn.closed for conn in h.conns)


def test_at_least_one_lane() -> None:
    async def connect() -> Any:
        raise AssertionError

    async def fire(conn: Any, items: list[int]) -> None:
        raise AssertionError

    with pytest.raises(ValueError, match="at least one"):
        FiringLanes(connect, fire, size=0, batch=1)
