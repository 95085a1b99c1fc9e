"""The one rate-limited log: exact counts, one line per key and window, the callers' shapes."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from services.integrations.payloads import malformed_log
from services.logging import _STANDARD
from services.ratelimit_log import DETAIL_LIMIT, FieldNames, RateLimitedLog

LOGGER = "test.ratelimit_log"


class FakeMonotonic:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def logger() -> logging.Logger:
    return logging.getLogger(LOGGER)


def extras(record: logging.LogRecord) -> dict[str, Any]:
    """What ``extra`` put on a record: what the KeyedFormatter prints as ``key=value``."""
    return {k: v for k, v in vars(record).items() if k not in _STANDARD}


@pytest.fixture(autouse=True)
def _capture(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)


# --- when a line is written: the window -----------------------------------------------------


@dataclass(frozen=True)
class Case:
    steps: list[tuple[float, str, int]]  # (monotonic time, kind, how many at that time)
    lines: list[tuple[str, int, int]]  # (event, suppressed, total) of each line written
    counts: dict[str, int]
    every: float = 60.0
    per_kind: bool = True
    event: str | None = "x.malformed"


CASES = {
    "first at once, then one per kind and window, carrying the left out": Case(
        steps=[
            (0.0, "bad_json", 1000),
            (0.0, "wrong_type", 1),
            (59.9, "bad_json", 1),
            (60.0, "bad_json", 1),
        ],
        lines=[("x.malformed", 0, 1), ("x.malformed", 0, 1), ("x.malformed", 1000, 1002)],
        counts={"bad_json": 1002, "wrong_type": 1},
    ),
    "no event: the kind is the event, each its own window": Case(
        event=None,
        steps=[(1000.0, "x.failed", 3), (1000.0, "y.failed", 1), (1060.0, "x.failed", 1)],
        lines=[("x.failed", 0, 1), ("y.failed", 0, 1), ("x.failed", 2, 4)],
        counts={"x.failed": 4, "y.failed": 1},
    ),
    "one window for all kinds: a mixed flood is one line, the total is of all": Case(
        per_kind=False,
        steps=[*((t / 1000, "bad_json", 1) for t in range(5000)), (61.0, "unknown_type", 1)],
        lines=[("x.malformed", 0, 1), ("x.malformed", 4999, 5001)],
        counts={"bad_json": 5000, "unknown_type": 1},
    ),
    "the window is measured from the last line, not from the first occurrence": Case(
        every=10.0,
        steps=[(0.0, "k", 1), (9.999, "k", 1), (10.0, "k", 1), (19.9, "k", 2), (20.0, "k", 1)],
        lines=[("x.malformed", 0, 1), ("x.malformed", 1, 3), ("x.malformed", 2, 6)],
        counts={"k": 6},
    ),
    "a quiet key logs at once again, with what it left out long ago": Case(
        steps=[(0.0, "k", 2), (86_400.0, "k", 1)],
        lines=[("x.malformed", 0, 1), ("x.malformed", 1, 3)],
        counts={"k": 3},
    ),
    "a clock that starts below zero still logs the first at once": Case(
        steps=[(-1e9, "k", 1), (-1e9 + 59, "k", 1)],
        lines=[("x.malformed", 0, 1)],
        counts={"k": 2},
    ),
    "every=0 logs everything": Case(
        every=0.0,
        steps=[(0.0, "k", 3)],
        lines=[("x.malformed", 0, 1), ("x.malformed", 0, 2), ("x.malformed", 0, 3)],
        counts={"k": 3},
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_counts_are_exact_and_lines_bounded(case: Case, caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeMonotonic()
    log = RateLimitedLog(
        logger(), case.event, every=case.every, monotonic=clock,
        per_kind=case.per_kind, names=FieldNames(total="total"),
    )  # fmt: skip
    written = 0
    for now, kind, times in case.steps:
        clock.now = now
        written += sum(log.record(kind, "detail") for _ in range(times))
    got = [(r.event, r.suppressed, r.total) for r in caplog.records]  # type: ignore[attr-defined]
    assert got == case.lines and written == len(case.lines)
    assert log.as_dict() == case.counts == log.counts
    assert log.total == sum(case.counts.values())


# --- what a line carries: each caller's shape -----------------------------------------------


@dataclass(frozen=True)
class Shape:
    log: Callable[[], RateLimitedLog]  # built the way the caller builds it
    record: tuple[str, ...]  # the (kind, detail) given to ``record``
    message: str
    extra: dict[str, Any]
    fields: dict[str, Any] = field(default_factory=dict)


SHAPES = {
    "the MQTT layers' malformed input (services.integrations.payloads)": Shape(
        log=lambda: malformed_log(logger(), "zigbee2mqtt", FakeMonotonic()),
        record=("bad_json", "z2m/door: not JSON"),
        fields={"topic": "z2m/door"},
        message="zigbee2mqtt: malformed message (bad_json): z2m/door: not JSON",
        extra={
            "event": "integrations.malformed", "integration": "zigbee2mqtt", "kind": "bad_json",
            "topic": "z2m/door", "suppressed": 0, "total": 1,
        },
    ),
    "the sink's failed deliveries": Shape(
        log=lambda: malformed_log(
            logger(), "frigate", FakeMonotonic(),
            event="integrations.delivery_failed", what="delivery failed",
        ),
        record=("OperationalError", "the database is away"),
        message="frigate: delivery failed (OperationalError): the database is away",
        extra={
            "event": "integrations.delivery_failed", "integration": "frigate",
            "kind": "OperationalError", "suppressed": 0, "total": 1,
        },
    ),
    "the WebSocket clients' counted lines (ws_client)": Shape(
        log=lambda: RateLimitedLog(
            logger(), "home_assistant.malformed", "malformed message ignored", per_kind=False,
            names=FieldNames(
                kind="reason", detail="detail", suppressed="not_logged_since_last", total="total"
            ),
        ),
        record=("bad_json", "{nope"),
        message="malformed message ignored",
        extra={
            "event": "home_assistant.malformed", "reason": "bad_json", "detail": "{nope",
            "not_logged_since_last": 0, "total": 1,
        },
    ),
    "the alarm timers' malformed notices": Shape(
        log=lambda: RateLimitedLog(
            logger(), "alarm.timer_notice_malformed", "malformed timer notice ignored",
            names=FieldNames(detail="error", total="count"),
        ),
        record=("bad_payload", "'x': not '<kind> <id> <epoch|cancel>'"),
        message="malformed timer notice ignored",
        extra={
            "event": "alarm.timer_notice_malformed",
            "error": "'x': not '<kind> <id> <epoch|cancel>'", "suppressed": 0, "count": 1,
        },
    ),
    "realtime's failures: the kind is the event, the detail the text": Shape(
        log=lambda: RateLimitedLog(logger()),
        record=("realtime.join_failed", "cannot join the push group"),
        fields={"error": "ConnectionError()"},
        message="cannot join the push group",
        extra={"event": "realtime.join_failed", "error": "ConnectionError()", "suppressed": 0},
    ),
}  # fmt: skip


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_each_caller_keeps_its_event_and_field_names(
    shape: Shape, caplog: pytest.LogCaptureFixture
) -> None:
    assert shape.log().record(*shape.record, **shape.fields)
    [line] = caplog.records
    assert line.levelno == logging.WARNING
    assert (line.getMessage(), extras(line)) == (shape.message, shape.extra)


# --- the rest of the contract ---------------------------------------------------------------


def test_a_long_detail_is_cut_in_the_message_and_the_field(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = RateLimitedLog(logger(), "e", "got %(detail)s", names=FieldNames(detail="detail"))
    log.record("k", "x" * 10_000)
    [line] = caplog.records
    assert line.getMessage() == "got " + "x" * DETAIL_LIMIT
    assert line.detail == "x" * DETAIL_LIMIT  # type: ignore[attr-defined]


def test_a_percent_sign_in_a_detail_is_text(caplog: pytest.LogCaptureFixture) -> None:
    RateLimitedLog(logger()).record("k", "100% %(kind)s %s")
    assert caplog.records[0].getMessage() == "100% %(kind)s %s"


def test_fields_named_kind_or_detail_and_a_traceback_pass_through(
    caplog: pytest.LogCaptureFixture,
) -> None:
    error = RuntimeError("boom")
    RateLimitedLog(logger(), "e").record("k", "d", exc_info=error, kind="mine", detail="too")
    [line] = caplog.records
    assert (line.kind, line.detail) == ("mine", "too")  # type: ignore[attr-defined]
    assert line.exc_info is not None and line.exc_info[1] is error


def test_a_field_cannot_hide_the_event_or_the_numbers(caplog: pytest.LogCaptureFixture) -> None:
    log = RateLimitedLog(logger(), "e", names=FieldNames(total="total"))
    log.record("k", event="spoofed", suppressed=-1, total=-1)
    [line] = caplog.records
    assert (line.event, line.suppressed, line.total) == ("e", 0, 1)  # type: ignore[attr-defined]


def test_counts_is_a_copy() -> None:
    log = RateLimitedLog(logger())
    log.record("k")
    log.counts["k"] += 100
    assert log.counts == {"k": 1} and log.counts["never"] == 0


def test_threads_counting_at_once_lose_nothing_and_log_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = RateLimitedLog(logger(), "e", monotonic=FakeMonotonic())
    threads, each = 8, 2000
    start = threading.Barrier(threads)

    def hammer(n: int) -> None:
        start.wait()
        for _ in range(each):
            log.record(f"kind{n % 2}")

    workers = [threading.Thread(target=hammer, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert log.as_dict() == {"kind0": threads // 2 * each, "kind1": threads // 2 * each}
    assert log.total == threads * each and len(caplog.records) == 2  # the first of each kind
