"""Bounded logging of malformed input, and the ordered sink between callbacks and writers."""

from __future__ import annotations

import asyncio
import logging

import pytest

from services.integrations.malformed import MalformedLog
from services.integrations.sink import OrderedSink

TIMEOUT = 5.0


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def malformed_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "event", None) == "integrations.malformed"]


def test_counts_everything_and_logs_one_line_per_kind_and_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    log = MalformedLog(logging.getLogger("t"), "zigbee2mqtt", clock, interval=60)
    for _ in range(1000):
        log.record("bad_json", "x")
    log.record("wrong_type", "y")
    clock.now = 59.9
    log.record("bad_json", "x")
    clock.now = 60.0
    log.record("bad_json", "x")
    assert log.as_dict() == {"bad_json": 1002, "wrong_type": 1} and log.total == 1003
    lines = malformed_records(caplog)
    assert [(r.kind, r.total, r.suppressed) for r in lines] == [  # type: ignore[attr-defined]
        ("bad_json", 1, 0),
        ("wrong_type", 1, 0),
        ("bad_json", 1002, 1000),
    ]


def test_a_long_detail_is_cut(caplog: pytest.LogCaptureFixture) -> None:
    MalformedLog(logging.getLogger("t"), "frigate", Clock()).record("bad_json", "x" * 10_000)
    assert len(malformed_records(caplog)[0].getMessage()) < 300


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

    sink = OrderedSink("t", deliver, MalformedLog(logging.getLogger("t"), "t", Clock()))
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

    errors = MalformedLog(logging.getLogger("t"), "t", Clock())
    sink = OrderedSink("t", deliver, errors, limit=5)
    assert all(sink.put(n) for n in range(5))
    assert not sink.put(5)  # full: counted, not queued
    task = asyncio.create_task(sink.run())
    async with asyncio.timeout(TIMEOUT):
        await sink.wait_idle()
    task.cancel()
    assert (sink.delivered, sink.failed, errors.as_dict()) == (3, 2, {"dropped_overflow": 1})
