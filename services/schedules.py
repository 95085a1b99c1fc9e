"""Schedules: the instants ("slots") at which a periodic task is due. Pure and deterministic.

Every worker replica must compute the same slots, so nothing here reads the clock (time is always
an argument), nothing is random, and results are aware datetimes in UTC. A slot is a unique
instant: ``next_slot(after)`` returns the first slot STRICTLY after ``after``, never one twice.

Semantics
---------
``Every(seconds, jitter=0, anchor=None)``
    Slots at ``anchor + k * seconds`` for every integer k; anchor defaults to 1970-01-01T00:00Z.
    Real (UTC) time, so DST is irrelevant. Arithmetic is in integer microseconds (the period is
    rounded to the microsecond), so there is no float drift. ``fire_delay`` adds a deterministic
    delay in [0, jitter) from sha256 of the task name and the slot: replicas agree on fire times.
``Once(at, tz=None)``
    Exactly one slot, ``at``. A naive ``at`` (or an ISO string without offset) is a wall time in
    ``tz`` (wall-clock policy below); until a zone is bound (``with_default_tz``) ``next_slot``
    raises ScheduleError. An aware ``at`` ignores ``tz`` except to describe itself.
``Cron(expr, tz=None)``, and ``DailyAt(hour, minute, tz=None)`` = ``Cron(f"{minute} {hour} * * *")``
    5 fields, or 6 with seconds LAST (croniter's convention), or an alias such as ``@daily``.
    Day of month and day of week combine with OR when both are restricted (classic cron).
    Random/hashed fields (``R``, ``H``) are refused: replicas would disagree. No zone means UTC.
    Croniter iterates NAIVE local wall times (given aware ones, croniter 7 fires fixed-time jobs
    twice in the autumn); this module maps them to instants with one of two DST policies:

    * Real-time jobs: the hour field matches every hour (``*``, ``*/1``, ``0-23``). The job fires
      at every real instant whose local wall time matches: in both passes of the repeated autumn
      hour, never in the skipped spring hour (``*/15`` goes from 01:45 CET to 03:00 CEST).
    * Wall-clock jobs: any other hour field (``30 2 * * *``, ``0 9-17 * * *``, ``0 */2 * * *``).
      Each matching wall time fires ONCE: a repeated one at its first occurrence (fold=0), a
      skipped one at the instant the gap ends (``30 2 * * *`` in Paris on 2025-03-30 fires at
      03:00 CEST = 01:00Z). Wall times sharing one gap collapse into that single slot.

``latest_slot(schedule, after, until)`` is the last slot in (after, until], for catch-up after
downtime: O(1) for ``Every``, a short probe-and-walk for the others.
"""

from __future__ import annotations

import contextlib
import copy
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, tzinfo
from functools import lru_cache
from typing import NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, CroniterError, croniter

from services.backoff import stable_fraction

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


class ScheduleError(ValueError):
    """A schedule is invalid; the message names the offending value."""


class Schedule(ABC):
    """What every schedule offers. Concrete ones are frozen, comparable, hashable dataclasses."""

    @abstractmethod
    def validate(self) -> None:
        """Raise ScheduleError if invalid.

        Constructors only store bad values, so that the registry can name the task in the error.
        """

    @abstractmethod
    def next_slot(self, after: datetime) -> datetime | None:
        """The first slot strictly after ``after`` (aware), in UTC; None when there is none."""

    @abstractmethod
    def describe(self) -> str:
        """The schedule in a few words, for listings."""

    @abstractmethod
    def with_default_tz(self, tz: ZoneInfo) -> Schedule:
        """A copy whose missing time zone is ``tz``; self when it has one or needs none."""

    def fire_delay(self, task_name: str, slot: datetime) -> float:
        """Seconds after ``slot`` at which to fire it."""
        return 0.0

    def latest_slot(self, after: datetime, until: datetime) -> datetime | None:
        """The last slot s with after < s <= until, or None."""
        after, until = _as_utc(after, "after"), _as_utc(until, "until")
        # Probe windows ending at `until`, doubling them, so a dense schedule never walks the whole
        # (hours long) catch-up window, then walk forward through the first window holding a slot.
        window = timedelta(seconds=1)
        while True:
            low = max(after, until - window)
            slot = self.next_slot(low)
            if slot is not None and slot <= until:
                while (following := self.next_slot(slot)) is not None and following <= until:
                    slot = following
                return slot
            if low == after:
                return None
            window *= 2


@dataclass(frozen=True)
class Cron(Schedule):
    expr: str
    tz: str | tzinfo | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.expr, str):
            raise TypeError(f"Cron expression must be a str, got {type(self.expr).__name__}")
        object.__setattr__(self, "tz", _normalize_tz(self.tz))

    def validate(self) -> None:
        _parse_cron(self.expr)
        _zone(self.tz)

    def next_slot(self, after: datetime) -> datetime | None:
        self.validate()
        return _cron_next(_parse_cron(self.expr), _zone(self.tz), _as_utc(after, "after"))

    def describe(self) -> str:
        return f"cron {self.expr!r} ({_zone_name(self.tz)})"

    def with_default_tz(self, tz: ZoneInfo) -> Schedule:
        return self if self.tz is not None else replace(self, tz=tz)


@dataclass(frozen=True)
class DailyAt(Schedule):
    hour: int
    minute: int = 0
    tz: str | tzinfo | None = None

    def __post_init__(self) -> None:
        for name, value in (("hour", self.hour), ("minute", self.minute)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"DailyAt {name} must be an int, got {value!r}")
        object.__setattr__(self, "tz", _normalize_tz(self.tz))

    def validate(self) -> None:
        if not 0 <= self.hour <= 23:
            raise ScheduleError(f"DailyAt hour {self.hour} out of range 0-23")
        if not 0 <= self.minute <= 59:
            raise ScheduleError(f"DailyAt minute {self.minute} out of range 0-59")
        _zone(self.tz)

    def next_slot(self, after: datetime) -> datetime | None:
        self.validate()
        parsed = _parse_cron(f"{self.minute} {self.hour} * * *")
        return _cron_next(parsed, _zone(self.tz), _as_utc(after, "after"))

    def describe(self) -> str:
        return f"every day at {self.hour:02d}:{self.minute:02d} ({_zone_name(self.tz)})"

    def with_default_tz(self, tz: ZoneInfo) -> Schedule:
        return self if self.tz is not None else replace(self, tz=tz)


@dataclass(frozen=True)
class Every(Schedule):
    seconds: float | timedelta
    jitter: float = 0.0
    anchor: datetime | None = None

    def __post_init__(self) -> None:
        seconds = self.seconds
        if isinstance(seconds, timedelta):
            seconds = seconds.total_seconds()
        for name, value in (("seconds", seconds), ("jitter", self.jitter)):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(f"Every {name} must be a number, got {value!r}")
        if self.anchor is not None and not isinstance(self.anchor, datetime):
            raise TypeError(f"Every anchor must be a datetime, got {self.anchor!r}")
        object.__setattr__(self, "seconds", float(seconds))
        object.__setattr__(self, "jitter", float(self.jitter))

    @property
    def period_us(self) -> int:
        """The period in whole microseconds: all slot arithmetic is integer."""
        return round(_seconds(self.seconds) * 1_000_000)

    def validate(self) -> None:
        if not math.isfinite(_seconds(self.seconds)) or self.period_us < 1000:
            raise ScheduleError(
                f"Every seconds must be at least 0.001 (1 ms), got {self.seconds!r}"
            )
        if not (math.isfinite(self.jitter) and 0 <= self.jitter < self.period_us / 1e6):
            raise ScheduleError(
                f"Every jitter must be in [0, {self.seconds:g}) seconds, got {self.jitter!r}"
            )
        if self.anchor is not None and self.anchor.utcoffset() is None:
            raise ScheduleError(f"Every anchor {self.anchor.isoformat()} must be timezone-aware")

    def next_slot(self, after: datetime) -> datetime | None:
        self.validate()
        return self._slot(self._index(_as_utc(after, "after")) + 1)

    def latest_slot(self, after: datetime, until: datetime) -> datetime | None:
        self.validate()
        after, until = _as_utc(after, "after"), _as_utc(until, "until")
        slot = self._slot(self._index(until))
        return slot if slot > after else None

    def fire_delay(self, task_name: str, slot: datetime) -> float:
        if self.jitter <= 0:
            return 0.0
        delay = self.jitter * stable_fraction(task_name, _as_utc(slot, "slot").isoformat())
        # The fraction can round up to 1.0 in float; the contract is a delay strictly below jitter.
        return min(delay, math.nextafter(self.jitter, 0.0))

    def describe(self) -> str:
        notes = []
        if self.anchor is not None:
            notes.append(f"from {self.anchor.isoformat()}")
        if self.jitter:
            notes.append(f"jitter up to {self.jitter:g} s")
        suffix = f" ({', '.join(notes)})" if notes else ""
        return f"every {_duration_words(_seconds(self.seconds))}{suffix}"

    def with_default_tz(self, tz: ZoneInfo) -> Schedule:
        return self

    def _origin(self) -> datetime:
        # In UTC: aware arithmetic within one ZoneInfo is wall-clock arithmetic, wrong across DST.
        return EPOCH if self.anchor is None else self.anchor.astimezone(UTC)

    def _index(self, moment: datetime) -> int:
        """k of the last slot at or before ``moment`` (floor division, exact in microseconds)."""
        return (moment - self._origin()) // _MICROSECOND // self.period_us

    def _slot(self, index: int) -> datetime:
        return self._origin() + timedelta(microseconds=index * self.period_us)


@dataclass(frozen=True)
class Once(Schedule):
    at: datetime | str
    tz: str | tzinfo | None = None

    def __post_init__(self) -> None:
        if isinstance(self.at, str):
            # Parse now so equal instants compare equal; validate() reports a bad string.
            with contextlib.suppress(ValueError):
                object.__setattr__(self, "at", datetime.fromisoformat(self.at.strip()))
        elif not isinstance(self.at, datetime):
            raise TypeError(f"Once at must be a datetime or an ISO string, got {self.at!r}")
        object.__setattr__(self, "tz", _normalize_tz(self.tz))

    def validate(self) -> None:
        if isinstance(self.at, str):
            raise ScheduleError(f"Once at {self.at!r} is not an ISO 8601 date-time")
        _zone(self.tz)

    def next_slot(self, after: datetime) -> datetime | None:
        self.validate()
        at = self.instant()
        return at if at > _as_utc(after, "after") else None

    def instant(self) -> datetime:
        """The slot, in UTC. A naive time is a wall time in ``tz`` (first occurrence / gap end)."""
        self.validate()
        assert isinstance(self.at, datetime)  # validate() refused the unparseable string
        if self.at.utcoffset() is not None:
            return self.at.astimezone(UTC)
        if self.tz is None:
            raise ScheduleError(
                f"Once at {self.at.isoformat()} is naive and has no time zone bound"
            )
        return _wall_clock_instant(self.at, _zone(self.tz))

    def describe(self) -> str:
        if isinstance(self.at, str):
            return f"once at {self.at!r} (invalid)"
        at = self.at
        if at.utcoffset() is None:
            zone_name = "no time zone" if self.tz is None else _zone_name(self.tz)
        else:
            with contextlib.suppress(ScheduleError):  # shown in tz when it is a valid zone
                at = at.astimezone(_zone(self.tz)) if self.tz is not None else at
            zone_name = str(at.tzinfo)
        pattern = "%Y-%m-%d %H:%M:%S" if at.second or at.microsecond else "%Y-%m-%d %H:%M"
        return f"once at {at.strftime(pattern)} ({zone_name})"

    def with_default_tz(self, tz: ZoneInfo) -> Schedule:
        naive = isinstance(self.at, datetime) and self.at.utcoffset() is None
        return replace(self, tz=tz) if naive and self.tz is None else self


def upcoming(schedule: Schedule, after: datetime, count: int) -> list[datetime]:
    """The next ``count`` slots after ``after`` (fewer when the schedule runs out)."""
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    slots: list[datetime] = []
    cursor: datetime | None = after
    while len(slots) < count and cursor is not None:
        cursor = schedule.next_slot(cursor)
        if cursor is not None:
            slots.append(cursor)
    return slots


def latest_slot(schedule: Schedule, after: datetime, until: datetime) -> datetime | None:
    """The last slot s with after < s <= until (None if none): what a catch-up run is for."""
    return schedule.latest_slot(after, until)


def from_config(value: Schedule | str) -> Schedule:
    """A Schedule as is; a str is a cron expression."""
    if isinstance(value, Schedule):
        return value
    if isinstance(value, str):
        return Cron(value)
    raise TypeError(f"a schedule must be a Schedule or a cron string, got {value!r}")


# --- time zones --------------------------------------------------------------------------------


def _normalize_tz(tz: object) -> str | tzinfo | None:
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


def _zone(tz: str | tzinfo | None) -> tzinfo:
    if tz is None:
        return UTC
    if isinstance(tz, tzinfo):
        return tz
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ScheduleError(f"unknown time zone {tz!r}") from None


def _zone_name(tz: str | tzinfo | None) -> str:
    return "UTC" if tz is None else str(tz)


def _as_utc(moment: datetime, name: str) -> datetime:
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


def _wall_clock_instant(wall: datetime, zone: tzinfo) -> datetime:
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
def _parse_cron(expr: str) -> _ParsedCron:
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


def _cron_next(parsed: _ParsedCron, zone: tzinfo, after: datetime) -> datetime | None:
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
        slot = _wall_clock_instant(wall, zone)
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


def _seconds(value: float | timedelta) -> float:
    # __post_init__ stores a float; the annotation keeps accepting the timedelta callers may pass.
    return value.total_seconds() if isinstance(value, timedelta) else value


def _duration_words(seconds: float) -> str:
    if not seconds.is_integer():
        return f"{seconds:g} seconds"
    whole = int(seconds)
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if whole and whole % size == 0:
            count = whole // size
            return unit if count == 1 else f"{count} {unit}s"
    return f"{seconds:g} seconds"
