"""Cron expressions and time zones: parsing, validation, and local wall times mapped to instants.

The DST policy of ``services.schedules`` lives here: croniter only ever sees NAIVE local wall
times, and this module turns them into UTC instants, either in real time (every instant whose
wall time matches) or once per wall time (first occurrence; a skipped time at the gap's end).
Pure: stdlib and croniter only.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, tzinfo
from functools import lru_cache
from typing import NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, CroniterError, croniter


class ScheduleError(ValueError):
    """A schedule is invalid; the message names the offending value."""


# --- time zones --------------------------------------------------------------------------------


def normalize_tz(tz: object) -> str | tzinfo | None:
    # Keys rather than objects, so Cron(e, "Europe/Paris") == Cron(e, ZoneInfo("Europe/Paris")).
    if tz is None or isinstance(tz, str):
        return tz
    if tz is UTC:
        return "UTC"
    if isinstance(tz, ZoneInfo) and tz.key:
        return tz.key
    if isinstance(tz, tzinfo):
        return tz
    raise TypeError(f"tz must be a zone name or a ZoneInfo, got {tz!r}")


def zone(tz: str | tzinfo | None) -> tzinfo:
    if tz is None:
        return UTC
    if isinstance(tz, tzinfo):
        return tz
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ScheduleError(f"unknown time zone {tz!r}") from None


def zone_name(tz: str | tzinfo | None) -> str:
    return "UTC" if tz is None else str(tz)


def as_utc(moment: datetime, name: str) -> datetime:
    # Always compare in UTC: aware datetimes sharing a tzinfo compare by wall time, ignoring fold.
    if not isinstance(moment, datetime) or moment.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got {moment!r}")
    return moment.astimezone(UTC)


def _offset(moment: datetime) -> timedelta:
    return moment.utcoffset() or timedelta(0)


def _instants(wall: datetime, zone: tzinfo) -> tuple[datetime, ...]:
    """The real instants (UTC, earliest first) showing ``wall``: 2 when repeated, 0 when skipped."""
    first, second = wall.replace(tzinfo=zone, fold=0), wall.replace(tzinfo=zone, fold=1)
    if _offset(first) == _offset(second):
        return (first.astimezone(UTC),)
    if _offset(first) > _offset(second):  # PEP 495: fold=0 takes the earlier (pre-shift) offset
        return (first.astimezone(UTC), second.astimezone(UTC))
    return ()


def wall_clock_instant(wall: datetime, zone: tzinfo) -> datetime:
    """``wall`` under the wall-clock policy: first occurrence, or the end of the gap hiding it."""
    instants = _instants(wall, zone)
    return instants[0] if instants else _gap_end(wall, zone)


def _gap_end(wall: datetime, zone: tzinfo) -> datetime:
    """The instant the spring-forward gap containing ``wall`` ends."""
    # zoneinfo has no transition API. In a gap, fold=1 applies the post-shift offset (an instant
    # before the shift) and fold=0 the pre-shift one (an instant after it): bisect the whole
    # seconds in between (tzdata's resolution).
    low = math.floor(wall.replace(tzinfo=zone, fold=1).timestamp())
    high = math.ceil(wall.replace(tzinfo=zone, fold=0).timestamp())
    shifted = _offset(datetime.fromtimestamp(high, zone))
    while high - low > 1:
        middle = (low + high) // 2
        if _offset(datetime.fromtimestamp(middle, zone)) == shifted:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, UTC)


# --- cron ---------------------------------------------------------------------------------------

_FIELDS = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 7),
    ("second", 0, 59),
)
_ALIASES = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
_VALUE = re.compile(r"(?<![/#\d])\d+")  # values, not steps (*/5) nor nth weekdays (5#2)
_RANDOM = re.compile(r"(?<![a-z])[hr](?![a-z])", re.IGNORECASE)  # H, R(1-5); not THU, FRI


class _ParsedCron(NamedTuple):
    prototype: croniter  # copied per call: croniter objects are stateful, parsing one is slow
    real_time: bool


@lru_cache(maxsize=512)
def parse_cron(expr: str) -> _ParsedCron:
    fields = _ALIASES.get(expr.strip().lower(), expr)
    _check_fields(expr, fields)
    try:
        expanded, _ = croniter.expand(fields)
        prototype = croniter(fields, datetime(2000, 1, 1))  # noqa: DTZ001 - naive wall times
        copy.copy(prototype).get_next(datetime)
    except CroniterBadDateError:
        raise ScheduleError(f"cron expression {expr!r} never matches any date") from None
    except (CroniterError, ValueError, KeyError) as exc:
        raise ScheduleError(f"cron expression {expr!r}: {exc}") from None
    hours = expanded[1]
    return _ParsedCron(prototype, real_time=hours == ["*"] or set(hours) >= set(range(24)))


def _check_fields(expr: str, text: str) -> None:
    """Checks croniter makes too vaguely (its range error does not name the field)."""
    if text.strip().startswith("@"):
        raise ScheduleError(
            f"cron expression {expr!r}: unknown alias; known: {', '.join(_ALIASES)}"
        )
    fields = text.split()
    if len(fields) not in (5, 6):
        raise ScheduleError(
            f"cron expression {expr!r}: expected 5 fields (minute hour day month weekday) "
            f"or 6 with seconds last, got {len(fields)}"
        )
    for text, (name, low, high) in zip(fields, _FIELDS, strict=False):
        if _RANDOM.search(text):
            raise ScheduleError(
                f"cron expression {expr!r}: {name} {text!r} is random/hashed (H, R); "
                "every replica must compute the same slots"
            )
        for value in _VALUE.findall(text):
            if not low <= int(value) <= high:
                raise ScheduleError(
                    f"cron expression {expr!r}: {name} {value} out of range {low}-{high}"
                )


def _walls(parsed: _ParsedCron, start: datetime) -> Iterator[datetime]:
    """Matching naive wall times strictly after the naive ``start``."""
    walker = copy.copy(parsed.prototype)
    walker.set_current(start.replace(fold=0), force=True)
    while True:
        yield walker.get_next(datetime)


def cron_next(parsed: _ParsedCron, zone: tzinfo, after: datetime) -> datetime | None:
    try:
        if parsed.real_time:
            return _next_real_time(parsed, zone, after)
        return _next_wall_clock(parsed, zone, after)
    except (CroniterBadDateError, OverflowError):  # past year 9999
        return None


def _next_wall_clock(parsed: _ParsedCron, zone: tzinfo, after: datetime) -> datetime:
    # The wall-clock mapping never decreases as wall time grows, and no wall time at or before
    # after's own maps past `after`: the first mapped instant > after is the answer.
    for wall in _walls(parsed, after.astimezone(zone).replace(tzinfo=None)):
        slot = wall_clock_instant(wall, zone)
        if slot > after:
            return slot
    raise AssertionError("unreachable: croniter iterates forever")


def _next_real_time(parsed: _ParsedCron, zone: tzinfo, after: datetime) -> datetime | None:
    local = after.astimezone(zone)
    wall = local.replace(tzinfo=None)
    lookback = timedelta(0)
    if local.fold == 0:
        # `after` in the first pass of a repeated hour: earlier wall times come round again later.
        first, second = wall.replace(tzinfo=zone, fold=0), wall.replace(tzinfo=zone, fold=1)
        lookback = max(_offset(first) - _offset(second), timedelta(0))
    best: datetime | None = None
    for candidate in _walls(parsed, wall - lookback):
        instants = _instants(candidate, zone)
        later = [instant for instant in instants if instant > after]
        if later and (best is None or later[0] < best):
            best = later[0]
        # First occurrences grow with wall time: once one is past `after`, nothing later beats it.
        if instants and instants[0] > after:
            return best
    raise AssertionError("unreachable: croniter iterates forever")
