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
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

from services.backoff import stable_fraction
from services.cron_expr import (
    ScheduleError,
    as_utc,
    cron_next,
    normalize_tz,
    parse_cron,
    wall_clock_instant,
    zone,
    zone_name,
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


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
        after, until = as_utc(after, "after"), as_utc(until, "until")
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
        object.__setattr__(self, "tz", normalize_tz(self.tz))

    def validate(self) -> None:
        parse_cron(self.expr)
        zone(self.tz)

    def next_slot(self, after: datetime) -> datetime | None:
        self.validate()
        return cron_next(parse_cron(self.expr), zone(self.tz), as_utc(after, "after"))

    def describe(self) -> str:
        return f"cron {self.expr!r} ({zone_name(self.tz)})"

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
        object.__setattr__(self, "tz", normalize_tz(self.tz))

    def validate(self) -> None:
        if not 0 <= self.hour <= 23:
            raise ScheduleError(f"DailyAt hour {self.hour} out of range 0-23")
        if not 0 <= self.minute <= 59:
            raise ScheduleError(f"DailyAt minute {self.minute} out of range 0-59")
        zone(self.tz)

    def next_slot(self, after: datetime) -> datetime | None:
        self.validate()
        parsed = parse_cron(f"{self.minute} {self.hour} * * *")
        return cron_next(parsed, zone(self.tz), as_utc(after, "after"))

    def describe(self) -> str:
        return f"every day at {self.hour:02d}:{self.minute:02d} ({zone_name(self.tz)})"

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
        return self._slot(self._index(as_utc(after, "after")) + 1)

    def latest_slot(self, after: datetime, until: datetime) -> datetime | None:
        self.validate()
        after, until = as_utc(after, "after"), as_utc(until, "until")
        slot = self._slot(self._index(until))
        return slot if slot > after else None

    def fire_delay(self, task_name: str, slot: datetime) -> float:
        if self.jitter <= 0:
            return 0.0
        delay = self.jitter * stable_fraction(task_name, as_utc(slot, "slot").isoformat())
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
        object.__setattr__(self, "tz", normalize_tz(self.tz))

    def validate(self) -> None:
        if isinstance(self.at, str):
            raise ScheduleError(f"Once at {self.at!r} is not an ISO 8601 date-time")
        zone(self.tz)

    def next_slot(self, after: datetime) -> datetime | None:
        self.validate()
        at = self.instant()
        return at if at > as_utc(after, "after") else None

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
        return wall_clock_instant(self.at, zone(self.tz))

    def describe(self) -> str:
        if isinstance(self.at, str):
            return f"once at {self.at!r} (invalid)"
        at = self.at
        if at.utcoffset() is None:
            label = "no time zone" if self.tz is None else zone_name(self.tz)
        else:
            with contextlib.suppress(ScheduleError):  # shown in tz when it is a valid zone
                at = at.astimezone(zone(self.tz)) if self.tz is not None else at
            label = str(at.tzinfo)
        pattern = "%Y-%m-%d %H:%M:%S" if at.second or at.microsecond else "%Y-%m-%d %H:%M"
        return f"once at {at.strftime(pattern)} ({label})"

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
