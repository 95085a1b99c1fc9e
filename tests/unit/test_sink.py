"""The ordered sink between callbacks and writers (its logs: ``test_ratelimit_log``)."""

from __future__ import annotations

import asyncio
import logging

from services.integrations.payloads import malformed_log
from services.integrations.sink import OrderedSink

TIMEOUT = 5.0


def still() -> float:
    return 0.0


async def test_the_sink_delivers_in_order_one_at_a_time() -> None:
    delivered: list[int] = []
    running = 0

    async def deliver(item: int) -> None:
        nonlocal running
        running += 1
        assert running == 1
        await asyncio.sleep(0)
        delivered.append(item)
        running -= 1

    sink = OrderedSink("t", deliver, malformed_log(logging.getLogger("t"), "t", still))
    task = asyncio.create_task(sink.run())
    for n in range(100):
        sink.put(n)
    async with asyncio.timeout(TIMEOUT):
        await sink.wait_idle()
    task.cancel()
    assert delivered == list(range(100)) and sink.delivered == 100


async def test_the_sink_survives_failures_and_counts_overflow() -> None:
    async def deliver(item: int) -> None:
        if item % 2:
            raise RuntimeError(f"no {item}")

    errors = malformed_log(logging.getLogger("t"), "t", still)
    sink = OrderedSink("t", deliver, errors, limit=5)
    assert all(sink.put(n) for n in range(5))
    assert not sink.put(5)  # full: counted, not queued
    task = asyncio.create_task(sink.run())
    async with asyncio.timeout(TIMEOUT):
        await sink.wait_idle()
    task.cancel()
    assert (sink.delivered, sink.failed, errors.as_dict()) == (3, 2, {"dropped_overflow": 1})
