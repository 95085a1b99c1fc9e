from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from alarm.timer_policy import (
    JUMP_TOLERANCE,
    STALE_AFTER,
    PayloadError,
    from_epoch,
    monotonic_deadline,
    on_deadline,
    parse,
    payload,
    verdict,
)

NOW = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("kind", "lateness", "expected"),
    [
        ("action", 0.0, "fire"),
        ("action", STALE_AFTER, "fire"),
        ("action", STALE_AFTER + 0.001, "stale"),
        ("runtime", 30.0, "fire"),
        ("runtime", STALE_AFTER + 1, "restart"),
        ("alarm", 10 * 24 * 3600.0, "fire"),  # a delay always completes
        ("action", -5.0, "fire"),  # a wall clock stepped back: not late at all
    ],
)
def test_stale_policy_per_kind(kind: str, lateness: float, expected: str) -> None:
    assert verdict(kind, lateness) == expected


@pytest.mark.parametrize(
    "due",
    [
        NOW,
        NOW + timedelta(microseconds=123456),
        NOW + timedelta(microseconds=1),
        datetime(2038, 1, 19, 3, 14, 8, 999999, tzinfo=UTC),
    ],
)
def test_payload_round_trips_to_the_microsecond(due: datetime) -> None:
    notice = parse(payload("action", 42, due))
    assert notice.key == ("action", 42)
    assert notice.due == due


@pytest.mark.parametrize(
    ("text", "key", "due"),
    [
        ("runtime 7 cancel", ("runtime", 7), None),
        ("alarm 1 1748865600", ("alarm", 1), datetime(2025, 6, 2, 12, 0, tzinfo=UTC)),
        # PostgreSQL's extract(epoch ...) text, six decimals
        ("action 3 1748865600.000001", ("action", 3), NOW + timedelta(microseconds=1)),
    ],
)
def test_parse(text: str, key: tuple[str, int], due: datetime | None) -> None:
    notice = parse(text)
    assert (notice.key, notice.due) == (key, due)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "expected '<kind> <id> <epoch|cancel>'"),
        ("action 1", "expected '<kind> <id>"),
        ("action 1 2 3", "expected '<kind> <id>"),
        ("job 1 cancel", "unknown timer kind 'job'"),
        ("action x cancel", "unreadable payload"),
        ("action 1 soon", "unreadable payload"),
        ("action 1 NaN", "unreadable payload"),
        ("action 1 1e400", "unreadable payload"),
    ],
)
def test_malformed_payloads_are_refused_with_a_reason(text: str, problem: str) -> None:
    with pytest.raises(PayloadError, match=problem.replace("|", r"\|")):
        parse(text)


@pytest.mark.parametrize(
    ("text", "micros"),
    [
        ("0.000001", 1),
        ("1748865600", 1748865600_000000),
        ("1748865600.5", 1748865600_500000),
        ("1748865600.999999", 1748865600_999999),
        ("1748865600.", 1748865600_000000),
        # not the usual text: read through Decimal, rounded to the microsecond
        ("1748865600.0000005", 1748865600_000000),
        ("1748865600.0000015", 1748865600_000002),
        ("-1.5", -1_500000),
        ("1.7488656e9", 1748865600_000000),
    ],
)
def test_from_epoch_is_exact(text: str, micros: int) -> None:
    assert from_epoch(text) == datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)


def test_monotonic_deadline() -> None:
    assert monotonic_deadline(NOW + timedelta(seconds=5), NOW, 100.0) == 105.0
    assert monotonic_deadline(NOW - timedelta(seconds=5), NOW, 100.0) == 95.0  # overdue


@pytest.mark.parametrize(
    ("wall_short", "fire", "wait", "jumped"),
    [
        (-1.0, True, 0.0, False),  # due passed by the wall clock too
        (0.0, True, 0.0, False),
        (0.001, False, 0.001, False),  # rounding: wait the rest, never early
        (JUMP_TOLERANCE, False, JUMP_TOLERANCE, False),
        (3600.0, True, 0.0, True),  # the wall clock was stepped back: fire on elapsed time
    ],
)
def test_on_deadline(wall_short: float, fire: bool, wait: float, jumped: bool) -> None:
    wake = on_deadline(NOW + timedelta(seconds=wall_short), NOW)
    assert (wake.fire, wake.clock_jumped) == (fire, jumped)
    assert wake.wait == pytest.approx(wait)
