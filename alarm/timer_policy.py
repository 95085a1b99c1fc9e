"""What the alarm's timers do when they come due, and the NOTIFY payload. Pure: no I/O.

Three kinds of durable timers live in three tables; each row is the truth, the worker's heap
only a copy keyed by ``(kind, id)``:

========  ===================================  ==============================================
kind      row, due column                      when due (late: seconds since the deadline)
========  ===================================  ==============================================
runtime   RuleRuntime.scheduled_for (a rule's  re-check the rule; its actions run if it now
          ``for`` node whose child holds)      holds. More than 60 s late (no worker ran): the
                                               entity states may be stale until the
                                               integrations resync, so the wait RESTARTS from
                                               now (a change in between cancels it as usual).
action    PendingAction.fire_at                run the action. More than 60 s late: CANCELLED
          (a delayed rule action)              as stale (a "door open" notification an hour
                                               late misleads more than it helps).
alarm     AlarmState.delay_until (the exit or  ALWAYS completes, however late: arming ->
          entry delay)                         armed, pending -> triggered (an intrusion is
                                               never forgotten because the worker was down).
========  ===================================  ==============================================

Waiting uses the monotonic clock, the schedule is wall time: a due time learnt at wall time
``w`` and monotonic time ``m`` is waited for until ``m + (due - w)``. After that wait the wall
clock is read again: if it is still short of the due time by a little (rounding, slewing), the
timer waits for the rest, so it is never early by the wall clock either; if it is short by more
than ``JUMP_TOLERANCE`` the wall clock was stepped back, and the timer fires on elapsed time,
not an hour late. A wall clock stepped forward does not shorten a wait already computed.
Lateness, for the stale policy, is elapsed (monotonic) time too: a step forward of the wall
clock does not make a timer stale; a row already overdue when loaded counts from its due time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Literal

from services.timers import TimerHeap

CHANNEL = "alarm_timers"
RUNTIME, ACTION, ALARM = "runtime", "action", "alarm"
KINDS = (RUNTIME, ACTION, ALARM)
CANCEL = "cancel"

STALE_AFTER = 60.0  # seconds, for the kinds that have a stale policy
JUMP_TOLERANCE = 0.25  # seconds the wall clock may lag the monotonic deadline without a jump

Verdict = Literal["fire", "stale", "restart"]
Key = tuple[str, int]


def verdict(kind: str, lateness: float) -> Verdict:
    """What a timer of ``kind`` that comes due ``lateness`` seconds late does."""
    if kind == ALARM or lateness <= STALE_AFTER:
        return "fire"
    return "restart" if kind == RUNTIME else "stale"


@dataclass(frozen=True)
class Notice:
    """One NOTIFY from a timer table: ``due`` is None when the row is no longer scheduled."""

    key: Key
    due: datetime | None


class PayloadError(ValueError):
    pass


def payload(kind: str, row_id: int, due: datetime | None) -> str:
    """The trigger's payload: ``"action 42 1748865600.123456"`` or ``"action 42 cancel"``."""
    if due is None:
        return f"{kind} {row_id} {CANCEL}"
    delta = due - _EPOCH
    micros = (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
    return f"{kind} {row_id} {Decimal(micros).scaleb(-6)}"


def parse(text: str) -> Notice:
    """The notice in a payload; PayloadError (with the reason) when it is not one."""
    parts = text.split()
    if len(parts) != 3:
        raise PayloadError(f"expected '<kind> <id> <epoch|cancel>', got {text[:80]!r}")
    kind, raw_id, raw_due = parts
    if kind not in KINDS:
        raise PayloadError(f"unknown timer kind {kind!r}")
    try:
        row_id = int(raw_id)
        due = None if raw_due == CANCEL else from_epoch(raw_due)
    except (ValueError, OverflowError, InvalidOperation) as exc:
        raise PayloadError(f"unreadable payload {text[:80]!r}: {exc}") from None
    return Notice((kind, row_id), due)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def from_epoch(text: str) -> datetime:
    """The instant of PostgreSQL's ``extract(epoch from ...)`` text, to the exact microsecond.

    Not through a float: a due time one microsecond early would fail the claim's
    ``due <= the time waited for`` and the timer would be lost. The usual text (digits, at
    most six decimals) is read with integers, 5x quicker than Decimal: a bulk change of
    thousands of rows is thousands of notices read in a row on the event loop.
    """
    whole, _, fraction = text.partition(".")
    if whole.isdigit() and len(fraction) <= 6 and (not fraction or fraction.isdigit()):
        micros_exact = int(whole) * 1_000_000 + int(fraction.ljust(6, "0") or 0)
        return _EPOCH + timedelta(microseconds=micros_exact)
    micros = Decimal(text).scaleb(6).to_integral_value()
    if not micros.is_finite():
        raise ValueError(f"not a finite time: {text!r}")
    return _EPOCH + timedelta(microseconds=int(micros))


def monotonic_deadline(due: datetime, wall_now: datetime, mono_now: float) -> float:
    """The monotonic time at which ``due`` (wall) comes, as seen from now."""
    return mono_now + (due - wall_now).total_seconds()


@dataclass(frozen=True)
class Wake:
    """After the monotonic deadline: fire, or wait ``wait`` seconds more (never early)."""

    fire: bool
    wait: float = 0.0
    clock_jumped: bool = False


def on_deadline(due: datetime, wall_now: datetime) -> Wake:
    """Decide at a timer's monotonic deadline, from the wall clock read right after it."""
    short = (due - wall_now).total_seconds()
    if short <= 0:
        return Wake(fire=True)
    if short <= JUMP_TOLERANCE:
        return Wake(fire=False, wait=short)
    return Wake(fire=True, clock_jumped=True)


@dataclass(frozen=True)
class Ready:
    """A timer to fire: ``late`` is the elapsed time since its deadline (monotonic, so a
    wall-clock step does not make it look late; a row overdue at load counts from its due)."""

    key: Key
    due: datetime
    late: float
    clock_jumped: bool = False


class Schedule:
    """The worker's copy of the timer tables: a heap of monotonic deadlines by ``(kind, id)``,
    with each key's wall-clock due time. Pure: callers pass both clocks' readings."""

    def __init__(self) -> None:
        self._heap: TimerHeap[Key] = TimerHeap()
        self._due: dict[Key, datetime] = {}

    def set(self, key: Key, due: datetime, wall_now: datetime, mono_now: float) -> bool:
        """Schedule (or move) ``key``; True when the earliest deadline moved earlier."""
        return self.set_at(key, due, monotonic_deadline(due, wall_now, mono_now))

    def set_at(self, key: Key, due: datetime, deadline: float) -> bool:
        before = self._heap.next_deadline()
        self._heap.schedule(key, deadline)
        self._due[key] = due
        return before is None or deadline < before

    def cancel(self, key: Key) -> bool:
        self._due.pop(key, None)
        return self._heap.cancel(key)

    def pop_ready(self, wall_now: datetime, mono_now: float) -> list[Ready]:
        """Every timer to fire now, earliest first.

        A key whose monotonic deadline passed but whose wall-clock time is a little ahead
        stays, at the deadline the wall clock asks for (never early).
        """
        ready = []
        for key, deadline in self._heap.pop_due(mono_now):
            due = self._due.pop(key)
            wake = on_deadline(due, wall_now)
            if wake.fire:
                ready.append(Ready(key, due, mono_now - deadline, wake.clock_jumped))
            else:
                self.set_at(key, due, max(deadline, mono_now) + wake.wait)
        return ready

    def next_deadline(self) -> float | None:
        """The earliest monotonic deadline, or None when nothing is scheduled."""
        deadline: float | None = self._heap.next_deadline()
        return deadline

    def due_of(self, key: Key) -> datetime | None:
        return self._due.get(key)

    def overdue(self, wall_now: datetime) -> int:
        return sum(1 for due in self._due.values() if due <= wall_now)

    def __contains__(self, key: object) -> bool:
        return key in self._heap

    def __len__(self) -> int:
        return len(self._heap)
