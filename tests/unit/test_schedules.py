"""services.schedules: slots, the DST policy, catch-up windows, validation. Pure: no database.

Every expected instant was converted by hand (CET = UTC+1, CEST = UTC+2, EST = UTC-5, EDT = UTC-4),
never derived from the code under test. Instants are UTC; "MM-DD HH:MM[:SS]" means 2025. The 2025
transitions: Paris spring 03-30 01:00Z (02:00 CET -> 03:00 CEST), autumn 10-26 01:00Z (03:00 CEST
-> 02:00 CET); New York spring 03-09 07:00Z (02:00 EST -> 03:00 EDT), autumn 11-02 06:00Z (02:00
EDT -> 01:00 EST).

Micro-check (not asserted): next_slot of "*/15 * * * *" in Europe/Paris takes ~0.35 ms on the
2-core dev box and DailyAt ~0.2 ms, nearly all of it inside croniter.get_next.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from services.backoff import stable_fraction
from services.schedules import (
    Cron,
    DailyAt,
    Every,
    Once,
    Schedule,
    ScheduleError,
    from_config,
    latest_slot,
    upcoming,
)

PARIS = "Europe/Paris"
NY = "America/New_York"


def utc(text: str) -> datetime:
    """'2025-03-29 01:30' as an aware UTC datetime; a text without year is in 2025."""
    if len(text.split("-")[0]) == 2:
        text = f"2025-{text}"
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def naive(text: str) -> datetime:
    return datetime.fromisoformat(text)


# --- wall-clock jobs: once per matching local wall time ------------------------------------------


@pytest.mark.parametrize(
    ("schedule", "after", "expected"),
    [
        # Paris spring: 02:30 does not exist on 03-30 -> the gap end, 03:00 CEST.
        (Cron("30 2 * * *", PARIS), "03-28 12:00", ["03-29 01:30", "03-30 01:00", "03-31 00:30"]),
        (DailyAt(2, 30, PARIS), "03-28 12:00", ["03-29 01:30", "03-30 01:00", "03-31 00:30"]),
        # Paris autumn: 02:30 happens twice on 10-26 -> only the first (CEST) one.
        (Cron("30 2 * * *", PARIS), "10-24 12:00", ["10-25 00:30", "10-26 00:30", "10-27 01:30"]),
        (DailyAt(2, 30, PARIS), "10-24 12:00", ["10-25 00:30", "10-26 00:30", "10-27 01:30"]),
        # New York autumn: 01:30 happens twice on 11-02 -> only the first (EDT) one.
        (
            Cron("30 1 * * *", NY),
            "10-31 12:00",
            ["11-01 05:30", "11-02 05:30", "11-03 06:30"],
        ),
        (DailyAt(1, 30, NY), "10-31 12:00", ["11-01 05:30", "11-02 05:30", "11-03 06:30"]),
        # New York spring: 01:30 exists (still EST on 03-09); 02:30 does not -> 03:00 EDT.
        (
            Cron("30 1 * * *", NY),
            "03-07 12:00",
            ["03-08 06:30", "03-09 06:30", "03-10 05:30"],
        ),
        (DailyAt(2, 30, NY), "03-07 12:00", ["03-08 07:30", "03-09 07:00", "03-10 06:30"]),
        # New York autumn: 02:30 is not repeated there (01:00-02:00 is).
        (
            Cron("30 2 * * *", NY),
            "10-31 12:00",
            ["11-01 06:30", "11-02 07:30", "11-03 07:30"],
        ),
        # Several wall times in one gap collapse into ONE slot at the gap end.
        (Cron("*/15 2 * * *", PARIS), "03-29 12:00", ["03-30 01:00", "03-31 00:00", "03-31 00:15"]),
        (Cron("0 2,3 * * *", PARIS), "03-29 12:00", ["03-30 01:00", "03-31 00:00", "03-31 01:00"]),
        # Several wall times in the repeated hour: each once, in the first pass only.
        (Cron("0,30 2 * * *", PARIS), "10-25 12:00", ["10-26 00:00", "10-26 00:30", "10-27 01:00"]),
        (Cron("0 */2 * * *", PARIS), "10-25 23:30", ["10-26 00:00", "10-26 03:00", "10-26 05:00"]),
    ],
)
def test_wall_clock_jobs_fire_once_per_local_wall_time(
    schedule: Schedule, after: str, expected: list[str]
) -> None:
    assert upcoming(schedule, utc(after), 3) == [utc(slot) for slot in expected]


# --- real-time jobs: every matching real instant ------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "zone", "day_start", "day_end", "count", "minutes", "local_hours"),
    [
        # Local midnight to local midnight: 23 real hours in spring, 25 in autumn.
        ("0 * * * *", PARIS, "03-29 23:00", "03-30 22:00", 23, 60, {2: 0, 3: 1}),
        ("0 * * * *", PARIS, "10-25 22:00", "10-26 23:00", 25, 60, {2: 2, 3: 1}),
        ("0 * * * *", NY, "03-09 05:00", "03-10 04:00", 23, 60, {2: 0, 3: 1}),
        ("0 * * * *", NY, "11-02 04:00", "11-03 05:00", 25, 60, {1: 2, 2: 1}),
        ("*/15 * * * *", PARIS, "03-29 23:00", "03-30 22:00", 92, 15, {2: 0, 3: 4}),
        ("*/15 * * * *", PARIS, "10-25 22:00", "10-26 23:00", 100, 15, {2: 8, 3: 4}),
        ("*/15 * * * *", NY, "03-09 05:00", "03-10 04:00", 92, 15, {2: 0, 3: 4}),
        ("*/15 * * * *", NY, "11-02 04:00", "11-03 05:00", 100, 15, {1: 8, 2: 4}),
        ("@hourly", PARIS, "10-25 22:00", "10-26 23:00", 25, 60, {2: 2}),
        ("0 0-23 * * *", PARIS, "10-25 22:00", "10-26 23:00", 25, 60, {2: 2}),
    ],
)
def test_real_time_jobs_keep_real_time_across_transitions(
    expr: str,
    zone: str,
    day_start: str,
    day_end: str,
    count: int,
    minutes: int,
    local_hours: dict[int, int],
) -> None:
    slots = upcoming(Cron(expr, zone), utc(day_start), count)

    assert slots[-1] == utc(day_end)  # with even spacing: exactly `count` slots in the local day
    assert {b - a for a, b in itertools.pairwise(slots)} == {timedelta(minutes=minutes)}
    seen = Counter(slot.astimezone(ZoneInfo(zone)).hour for slot in slots)
    assert {hour: seen[hour] for hour in local_hours} == local_hours


@pytest.mark.parametrize(
    ("expr", "zone", "after", "expected"),
    [
        # `after` in the first pass of the repeated hour: an earlier wall time comes round again.
        ("0 * * * *", PARIS, "10-26 00:40", "10-26 01:00"),  # 02:40 CEST -> 02:00 CET
        ("*/15 * * * *", PARIS, "10-26 00:40", "10-26 00:45"),
        ("*/15 * * * *", PARIS, "10-26 00:45", "10-26 01:00"),  # 02:45 CEST -> 02:00 CET
        ("*/15 * * * *", PARIS, "10-26 01:00", "10-26 01:15"),
        ("*/15 * * * *", PARIS, "10-26 01:50", "10-26 02:00"),
        ("0 * * * *", NY, "11-02 05:30", "11-02 06:00"),  # 01:30 EDT -> 01:00 EST
        # Spring: 01:45 standard time is followed 15 real minutes later by 03:00 summer time.
        ("*/15 * * * *", PARIS, "03-30 00:45", "03-30 01:00"),
        ("*/15 * * * *", NY, "03-09 06:45", "03-09 07:00"),
    ],
)
def test_real_time_next_slot_is_the_earliest_instant(
    expr: str, zone: str, after: str, expected: str
) -> None:
    assert Cron(expr, zone).next_slot(utc(after)) == utc(expected)


@pytest.mark.parametrize(("fold", "expected"), [(0, "10-26 01:00"), (1, "10-26 02:00")])
def test_after_in_the_schedule_zone_respects_fold(fold: int, expected: str) -> None:
    # 02:30 in Paris on 10-26: fold=0 is 00:30Z (CEST), fold=1 is 01:30Z (CET).
    after = naive("2025-10-26T02:30").replace(fold=fold, tzinfo=ZoneInfo(PARIS))

    assert Cron("0 * * * *", PARIS).next_slot(after) == utc(expected)


# --- seconds field, weekly, monthly, no zone ------------------------------------------------------


@pytest.mark.parametrize(
    ("schedule", "after", "expected"),
    [
        # 6 fields, seconds LAST: minute 30 of every hour at second 10; real time in autumn.
        (Cron("30 * * * * 10", PARIS), "10-26 00:00", ["10-26 00:30:10", "10-26 01:30:10"]),
        (Cron("* * * * * */20"), "01-01 00:00:05", ["01-01 00:00:20", "01-01 00:00:40"]),
        # A skipped wall time with seconds still fires at the gap end itself.
        (Cron("30 2 * * * 15", PARIS), "03-29 12:00", ["03-30 01:00", "03-31 00:30:15"]),
        # Weekly: Monday 09:00 in Paris (CEST, then CET); Sunday 03:00 in New York.
        (Cron("0 9 * * 1", PARIS), "10-15 00:00", ["10-20 07:00", "10-27 08:00"]),
        (Cron("0 3 * * SUN", NY), "10-30 00:00", ["11-02 08:00", "11-09 08:00"]),
        (Cron("@weekly", NY), "03-02 12:00", ["03-09 05:00", "03-16 04:00"]),
        # Monthly at local midnight.
        (Cron("0 0 1 * *", PARIS), "09-15 00:00", ["09-30 22:00", "10-31 23:00"]),
        (Cron("@monthly", NY), "02-15 00:00", ["03-01 05:00", "04-01 04:00"]),
        # No zone bound means UTC; `after` itself is never a slot (strictly after).
        (Cron("0 3 * * *"), "06-01 03:00", ["06-02 03:00", "06-03 03:00"]),
        (DailyAt(3), "06-01 02:59:59.999999", ["06-01 03:00", "06-02 03:00"]),
    ],
)
def test_cron_expressions(schedule: Schedule, after: str, expected: list[str]) -> None:
    assert upcoming(schedule, utc(after), 2) == [utc(slot) for slot in expected]


def test_daily_at_matches_the_equivalent_cron() -> None:
    start = utc("03-01 00:00")

    assert upcoming(DailyAt(2, 30, PARIS), start, 300) == upcoming(
        Cron("30 2 * * *", PARIS), start, 300
    )


# --- latest_slot (catch-up) -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schedule", "after", "until", "expected"),
    [
        (Cron("30 2 * * *", PARIS), "10-25 12:00", "10-26 12:00", "10-26 00:30"),
        (Cron("30 2 * * *", PARIS), "10-25 12:00", "10-26 00:30", "10-26 00:30"),  # inclusive
        (Cron("30 2 * * *", PARIS), "10-25 12:00", "10-26 00:29:59", None),
        (Cron("30 2 * * *", PARIS), "10-26 00:30", "10-26 12:00", None),  # after exclusive
        (Cron("30 2 * * *", PARIS), "03-29 12:00", "03-30 12:00", "03-30 01:00"),
        (Cron("0 * * * *", PARIS), "10-25 23:30", "10-26 01:30", "10-26 01:00"),
        (Cron("*/15 * * * *", NY), "03-09 06:00", "03-09 07:10", "03-09 07:00"),
        (DailyAt(3, 0, PARIS), "10-25 03:00", "10-26 03:00", "10-26 02:00"),
        (Cron("* * * * * *"), "06-01 00:00", "06-01 12:00:00.999999", "06-01 12:00"),
        (Once("2025-06-01T12:00:00Z"), "06-01 00:00", "06-01 12:00", "06-01 12:00"),
        (Once("2025-06-01T12:00:00Z"), "06-01 12:00", "06-02 00:00", None),
        (Cron("0 3 * * *"), "06-02 00:00", "06-01 00:00", None),  # empty window
    ],
)
def test_latest_slot(schedule: Schedule, after: str, until: str, expected: str | None) -> None:
    assert latest_slot(schedule, utc(after), utc(until)) == (expected and utc(expected))


# --- Every ----------------------------------------------------------------------------------------

NOON_CET = naive("2025-03-29T12:00").replace(tzinfo=ZoneInfo(PARIS))


@pytest.mark.parametrize(
    ("schedule", "afters", "expected"),
    [
        (Every(300), ["06-01 10:00:00.000001", "06-01 10:04:59.999999"], "06-01 10:05"),
        # 2025-01-01T00:00Z is 1735689600 s = 19285440 * 90 s after the epoch: on the grid.
        (Every(90), ["01-01 00:00", "01-01 00:01:29"], "01-01 00:01:30"),
        (Every(3600, anchor=utc("01-01 00:30")), ["10-26 00:30", "10-26 01:29"], "10-26 01:30"),
        # The 24 h grid is real time: still 11:00Z after Paris switched to CEST.
        (Every(86400, anchor=NOON_CET), ["03-30 00:00", "03-30 10:59"], "03-30 11:00"),
        (Every(0.5), ["06-01 12:00:00.000001", "06-01 12:00:00.499999"], "06-01 12:00:00.5"),
        (Every(1), ["06-01 12:00", "06-01 12:00:00.999999"], "06-01 12:00:01"),
        # The epoch was a Thursday; 2025-10-30 is day 20391 = 2913 weeks later.
        (Every(timedelta(days=7)), ["10-23 00:00", "10-29 23:59"], "10-30 00:00"),
        # 36500 days after the epoch: 2070-01-01 is 36525 days (25 leap days), minus 25.
        (Every(timedelta(days=36500)), ["01-01 00:00"], "2069-12-07 00:00"),
    ],
)
def test_every_aligns_to_its_anchor(schedule: Every, afters: list[str], expected: str) -> None:
    assert {schedule.next_slot(utc(after)) for after in afters} == {utc(expected)}


def test_every_has_no_float_drift() -> None:
    slots = upcoming(Every(0.1), utc("06-01 12:00:00.05"), 1000)

    assert {b - a for a, b in itertools.pairwise(slots)} == {timedelta(milliseconds=100)}
    assert slots[-1] == utc("06-01 12:01:40")


@pytest.mark.parametrize(
    ("after", "until", "expected"),
    [
        ("06-01 12:00", "06-01 12:05", "06-01 12:05"),  # until inclusive
        ("06-01 12:05", "06-01 12:05", None),  # after exclusive
        ("06-01 12:04:59.999999", "06-01 12:05", "06-01 12:05"),
        ("06-01 12:04", "06-01 12:04:59", None),
        ("06-01 11:00", "06-01 12:30:30", "06-01 12:30"),
        ("06-01 13:00", "06-01 12:00", None),
    ],
)
def test_every_latest_slot_boundaries(after: str, until: str, expected: str | None) -> None:
    assert latest_slot(Every(60), utc(after), utc(until)) == (expected and utc(expected))


def test_every_latest_slot_is_arithmetic_not_iteration() -> None:
    # 55 years of 1 ms slots: iterating would never finish.
    assert latest_slot(Every(0.001), utc("1970-01-01 00:00"), utc("01-01 00:00")) == utc(
        "01-01 00:00"
    )


def test_fire_delay_is_deterministic_jitter_below_the_bound() -> None:
    schedule = Every(90, jitter=10)
    slots = upcoming(schedule, utc("06-01 00:00"), 20)

    delays = [schedule.fire_delay("outbox", slot) for slot in slots]

    assert delays == [Every(90, jitter=10).fire_delay("outbox", slot) for slot in slots]
    assert all(0 <= delay < 10 for delay in delays)
    assert len(set(delays)) == len(delays)  # differs across slots
    assert delays[0] == 10 * stable_fraction("outbox", slots[0].isoformat())
    assert schedule.fire_delay("ha_ping", slots[0]) != delays[0]
    # The same instant written in another zone is the same slot, hence the same delay.
    assert schedule.fire_delay("outbox", slots[0].astimezone(ZoneInfo(PARIS))) == delays[0]


def test_fire_delay_is_zero_without_jitter() -> None:
    assert Every(90).fire_delay("x", utc("06-01 00:00")) == 0.0
    assert Cron("* * * * *").fire_delay("x", utc("06-01 00:00")) == 0.0


# --- Once -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schedule", "after", "expected"),
    [
        (Once(utc("06-01 12:00")), "06-01 11:59", "06-01 12:00"),
        (Once(utc("06-01 12:00")), "06-01 12:00", None),
        (Once(utc("06-01 12:00")), "06-01 12:01", None),
        (Once("2025-06-01T12:00:00+02:00"), "06-01 00:00", "06-01 10:00"),
        (Once("2025-06-01 12:00", PARIS), "06-01 00:00", "06-01 10:00"),
        (Once(naive("2025-03-30T02:30"), PARIS), "03-29 00:00", "03-30 01:00"),  # gap end
        (Once("2025-10-26T02:30", PARIS), "10-25 00:00", "10-26 00:30"),  # first occurrence
    ],
)
def test_once(schedule: Once, after: str, expected: str | None) -> None:
    assert schedule.next_slot(utc(after)) == (expected and utc(expected))


def test_naive_once_needs_a_bound_zone() -> None:
    unbound = Once(naive("2025-06-01T12:00"))
    unbound.validate()  # fine until it must be placed on the time line

    with pytest.raises(ScheduleError, match="no time zone"):
        unbound.next_slot(utc("01-01 00:00"))
    bound = unbound.with_default_tz(ZoneInfo(NY))
    assert bound.next_slot(utc("01-01 00:00")) == utc("06-01 16:00")
    assert bound.with_default_tz(ZoneInfo(PARIS)) is bound


def test_upcoming_stops_when_the_schedule_runs_out() -> None:
    assert upcoming(Once(utc("06-01 00:00")), utc("01-01 00:00"), 5) == [utc("06-01 00:00")]
    assert upcoming(Every(60), utc("01-01 00:00"), 0) == []
    with pytest.raises(ValueError, match="-1"):
        upcoming(Every(60), utc("01-01 00:00"), -1)


# --- describe, binding, equality ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schedule", "words"),
    [
        (DailyAt(3, 0, PARIS), "every day at 03:00 (Europe/Paris)"),
        (DailyAt(4, 30), "every day at 04:30 (UTC)"),
        (Every(5), "every 5 seconds"),
        (Every(1), "every second"),
        (Every(0.5), "every 0.5 seconds"),
        (Every(90, jitter=10), "every 90 seconds (jitter up to 10 s)"),
        (Every(300), "every 5 minutes"),
        (Every(timedelta(hours=1)), "every hour"),
        (Every(86400 * 2), "every 2 days"),
        (Every(3600, anchor=utc("01-01 00:30")), "every hour (from 2025-01-01T00:30:00+00:00)"),
        (Cron("*/15 * * * *"), "cron '*/15 * * * *' (UTC)"),
        (Cron("0 9 * * 1", ZoneInfo(NY)), "cron '0 9 * * 1' (America/New_York)"),
        (Once(utc("06-01 12:00")), "once at 2025-06-01 12:00 (UTC)"),
        (Once(utc("06-01 12:00"), PARIS), "once at 2025-06-01 14:00 (Europe/Paris)"),
        (Once("2025-06-01 12:00:30", PARIS), "once at 2025-06-01 12:00:30 (Europe/Paris)"),
        (Once("2025-06-01 12:00"), "once at 2025-06-01 12:00 (no time zone)"),
        (Once("soon"), "once at 'soon' (invalid)"),
    ],
)
def test_describe(schedule: Schedule, words: str) -> None:
    assert schedule.describe() == words


def test_with_default_tz_fills_only_a_missing_zone() -> None:
    paris = ZoneInfo(PARIS)

    assert Cron("0 3 * * *").with_default_tz(paris) == Cron("0 3 * * *", PARIS)
    assert DailyAt(3).with_default_tz(paris) == DailyAt(3, 0, PARIS)
    for needs_nothing in (
        Cron("0 3 * * *", NY),
        DailyAt(3, 0, ZoneInfo(NY)),
        Every(5),
        Once(utc("06-01 00:00")),
    ):
        assert needs_nothing.with_default_tz(paris) is needs_nothing


def test_schedules_are_immutable_comparable_and_hashable() -> None:
    same = [
        (Cron("0 3 * * *", PARIS), Cron("0 3 * * *", ZoneInfo(PARIS))),
        (DailyAt(3, 0, "UTC"), DailyAt(3, 0, UTC)),
        (Every(5), Every(timedelta(seconds=5))),
        (Once("2025-06-01T12:00", "UTC"), Once(naive("2025-06-01T12:00"), "UTC")),
    ]
    for left, right in same:
        assert left == right
        assert hash(left) == hash(right)
    assert len({*(left for left, _ in same), Cron("0 4 * * *", PARIS)}) == 5
    with pytest.raises(dataclasses.FrozenInstanceError):
        Cron("0 3 * * *").expr = "0 4 * * *"  # type: ignore[misc]


def test_from_config() -> None:
    every = Every(5)

    assert from_config("*/5 * * * *") == Cron("*/5 * * * *")
    assert from_config(every) is every
    with pytest.raises(TypeError):
        from_config(5)  # type: ignore[arg-type]


# --- validation -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schedule", "mentions"),
    [
        (Cron("61 * * * *"), "cron expression '61 * * * *': minute 61 out of range 0-59"),
        (Cron("* 24 * * *"), "hour 24 out of range 0-23"),
        (Cron("0 0 32 * *"), "day of month 32"),
        (Cron("0 0 0 * *"), "day of month 0"),
        (Cron("0 0 * 13 *"), "month 13"),
        (Cron("0 0 * * 8"), "day of week 8"),
        (Cron("* * * * * 60"), "second 60"),
        (Cron("* * * *"), "got 4"),
        (Cron("* * * * * * *"), "got 7"),
        (Cron(""), "got 0"),
        (Cron("a b c d e"), "'a b c d e'"),
        (Cron("1,,2 * * * *"), "'1,,2 * * * *'"),
        (Cron("*/0 * * * *"), "'*/0 * * * *'"),
        (Cron("R * * * *"), "'R'"),
        (Cron("H/5 * * * *"), "'H/5'"),
        (Cron("@sometimes"), "'@sometimes'"),
        (Cron("0 0 30 2 *"), "never matches"),
        (Cron("0 3 * * *", "Mars/Olympus_Mons"), "'Mars/Olympus_Mons'"),
        (Cron("0 3 * * *", ""), "unknown time zone ''"),
        (DailyAt(24), "hour 24"),
        (DailyAt(-1), "hour -1"),
        (DailyAt(3, 60), "minute 60"),
        (DailyAt(3, 0, "Nowhere/City"), "'Nowhere/City'"),
        (Every(0), "got 0.0"),
        (Every(-5), "got -5.0"),
        (Every(0.0004), "got 0.0004"),
        (Every(math.nan), "got nan"),
        (Every(math.inf), "got inf"),
        (Every(10, jitter=10), "got 10.0"),
        (Every(10, jitter=-1), "got -1.0"),
        (Every(60, anchor=naive("2025-01-01T00:00")), "2025-01-01T00:00:00"),
        (Once("next tuesday"), "'next tuesday'"),
        (Once(naive("2025-06-01T00:00"), "Atlantis/Capital"), "'Atlantis/Capital'"),
    ],
)
def test_invalid_schedules_are_reported_by_validate_not_the_constructor(
    schedule: Schedule, mentions: str
) -> None:
    with pytest.raises(ScheduleError) as validated:
        schedule.validate()
    with pytest.raises(ScheduleError) as planned:
        schedule.next_slot(utc("06-01 00:00"))

    assert mentions in str(validated.value)
    assert str(planned.value) == str(validated.value)


@pytest.mark.parametrize(
    ("kind", "args", "kwargs"),
    [
        (Cron, (5,), {}),
        (Cron, ("* * * * *",), {"tz": 5}),
        (DailyAt, ("3",), {}),
        (DailyAt, (3, True), {}),
        (Every, ("5",), {}),
        (Every, (5,), {"anchor": "2025-01-01"}),
        (Once, (1748779200,), {}),
    ],
)
def test_wrong_types_raise_type_error(
    kind: type[Schedule], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    with pytest.raises(TypeError):
        kind(*args, **kwargs)


@pytest.mark.parametrize(
    "schedule", [Cron("0 * * * *", PARIS), DailyAt(3), Every(5), Once(utc("06-01 00:00"))]
)
def test_naive_after_is_a_value_error(schedule: Schedule) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        schedule.next_slot(naive("2025-06-01T00:00"))
    with pytest.raises(ValueError, match="timezone-aware"):
        latest_slot(schedule, utc("06-01 00:00"), naive("2025-06-02T00:00"))


@pytest.mark.parametrize(
    "schedule",
    [
        Cron("*/15 * * * *", PARIS),
        Cron("30 2 * * *", PARIS),
        Cron("*/10 1-2 * * *", NY),
        Cron("30 * * * * */20", NY),
        DailyAt(2, 30, NY),
        Every(37.5, jitter=5),
    ],
)
@pytest.mark.parametrize("start", ["03-29 22:00", "10-25 22:00", "11-01 00:00"])
def test_slots_are_aware_utc_and_strictly_increasing(schedule: Schedule, start: str) -> None:
    slots = upcoming(schedule, utc(start), 200)

    assert len(slots) == 200
    assert all(slot.tzinfo is UTC for slot in slots)
    assert all(a < b for a, b in itertools.pairwise(slots))
    assert slots[0] > utc(start)
