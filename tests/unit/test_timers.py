from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from alarm.timer_policy import Ready, Schedule
from services.clock import FakeClock
from services.timers import TimerHeap

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_empty_heap() -> None:
    heap: TimerHeap[str] = TimerHeap()
    assert len(heap) == 0
    assert heap.next_deadline() is None
    assert heap.pop_due(10.0) == []
    assert heap.cancel("missing") is False
    assert heap.due_of("missing") is None


def test_pops_in_order_of_due() -> None:
    heap: TimerHeap[str] = TimerHeap()
    for key, due in [("c", 3.0), ("a", 1.0), ("d", 4.0), ("b", 2.0)]:
        heap.schedule(key, due)
    assert heap.next_deadline() == 1.0
    assert heap.pop_due(10.0) == [("a", 1.0), ("b", 2.0), ("c", 3.0), ("d", 4.0)]
    assert len(heap) == 0


def test_equal_dues_pop_in_schedule_order() -> None:
    heap: TimerHeap[str] = TimerHeap()
    keys = ["k3", "k1", "k4", "k0", "k2"]
    for key in keys:
        heap.schedule(key, 5.0)
    assert [key for key, _ in heap.pop_due(5.0)] == keys


def test_rescheduled_key_goes_behind_its_ties() -> None:
    heap: TimerHeap[str] = TimerHeap()
    heap.schedule("a", 1.0)
    heap.schedule("b", 1.0)
    heap.schedule("a", 1.0)  # re-scheduled later in time -> later in the tie order
    assert heap.pop_due(1.0) == [("b", 1.0), ("a", 1.0)]


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (0.5, []),
        (0.999, []),
        (1.0, ["a"]),  # inclusive boundary
        (1.5, ["a"]),
        (2.0, ["a", "b"]),
        (3.0, ["a", "b", "c"]),
    ],
)
def test_pop_due_boundary_is_inclusive(now: float, expected: list[str]) -> None:
    heap: TimerHeap[str] = TimerHeap()
    heap.schedule("a", 1.0)
    heap.schedule("b", 2.0)
    heap.schedule("c", 3.0)
    assert [key for key, _ in heap.pop_due(now)] == expected
    assert len(heap) == 3 - len(expected)
    for key in expected:
        assert key not in heap


def test_pop_due_removes_what_it_returns() -> None:
    heap: TimerHeap[str] = TimerHeap()
    heap.schedule("a", 1.0)
    heap.schedule("b", 2.0)
    assert heap.pop_due(1.0) == [("a", 1.0)]
    assert heap.pop_due(1.0) == []
    assert heap.next_deadline() == 2.0


def test_cancel_returns_bool_and_removes() -> None:
    heap: TimerHeap[str] = TimerHeap()
    heap.schedule("a", 1.0)
    heap.schedule("b", 2.0)
    assert heap.cancel("a") is True
    assert heap.cancel("a") is False
    assert "a" not in heap
    assert len(heap) == 1
    assert heap.pop_due(10.0) == [("b", 2.0)]


def test_cancel_after_pop_returns_false() -> None:
    heap: TimerHeap[str] = TimerHeap()
    heap.schedule("a", 1.0)
    heap.pop_due(1.0)
    assert heap.cancel("a") is False


def test_next_deadline_skips_cancelled() -> None:
    heap: TimerHeap[str] = TimerHeap()
    heap.schedule("a", 1.0)
    heap.schedule("b", 2.0)
    heap.schedule("c", 3.0)
    heap.cancel("a")
    assert heap.next_deadline() == 2.0
    heap.cancel("b")
    assert heap.next_deadline() == 3.0
    heap.cancel("c")
    assert heap.next_deadline() is None


def test_reschedule_earlier() -> None:
    heap: TimerHeap[str] = TimerHeap()
    heap.schedule("a", 5.0)
    heap.schedule("b", 3.0)
    heap.reschedule("a", 1.0)
    assert len(heap) == 2
    assert heap.due_of("a") == 1.0
    assert heap.next_deadline() == 1.0
    assert heap.pop_due(1.0) == [("a", 1.0)]
    # the stale entry at 5.0 must never fire
    assert heap.pop_due(100.0) == [("b", 3.0)]


def test_reschedule_later() -> None:
    heap: TimerHeap[str] = TimerHeap()
    heap.schedule("a", 1.0)
    heap.schedule("b", 3.0)
    heap.reschedule("a", 5.0)
    assert len(heap) == 2
    assert heap.due_of("a") == 5.0
    assert heap.next_deadline() == 3.0
    assert heap.pop_due(1.0) == []  # the stale entry at 1.0 is dead
    assert heap.pop_due(4.0) == [("b", 3.0)]
    assert heap.pop_due(5.0) == [("a", 5.0)]


def test_len_and_contains() -> None:
    heap: TimerHeap[tuple[str, int]] = TimerHeap()
    heap.schedule(("rule", 1), 1.0)
    heap.schedule(("rule", 2), 2.0)
    heap.schedule(("rule", 1), 3.0)  # same key: replaces, does not add
    assert len(heap) == 2
    assert ("rule", 1) in heap
    assert ("rule", 3) not in heap
    assert heap.due_of(("rule", 1)) == 3.0


def test_datetime_dues() -> None:
    heap: TimerHeap[str] = TimerHeap()
    heap.schedule("late", at(60))
    heap.schedule("early", at(1))
    heap.schedule("mid", at(30))
    assert heap.next_deadline() == at(1)
    assert heap.pop_due(at(0)) == []
    assert heap.pop_due(at(30)) == [("early", at(1)), ("mid", at(30))]
    assert heap.next_deadline() == at(60)


def test_compaction_with_many_cancels() -> None:
    heap: TimerHeap[int] = TimerHeap()
    for i in range(10_000):
        heap.schedule(i, float(i))
    for i in range(9_990):
        assert heap.cancel(i) is True
    assert len(heap) == 10
    # dead entries are dropped once they outnumber the live ones, so memory stays bounded
    assert len(heap._heap) <= 2 * len(heap) + 64
    assert heap.next_deadline() == 9_990.0
    assert heap.pop_due(9_994.0) == [(i, float(i)) for i in range(9_990, 9_995)]
    assert heap.pop_due(1e9) == [(i, float(i)) for i in range(9_995, 10_000)]
    assert len(heap) == 0


def test_compaction_with_many_reschedules() -> None:
    heap: TimerHeap[str] = TimerHeap()
    heap.schedule("other", 500.0)
    for i in range(5_000):
        heap.schedule("k", float(i))
    assert len(heap) == 2
    assert len(heap._heap) <= 2 * len(heap) + 64
    assert heap.pop_due(1e9) == [("other", 500.0), ("k", 4_999.0)]


# --- the alarm's schedule: a heap of monotonic deadlines driven by a fake clock --------------


def schedule_on(clock: FakeClock, *entries: tuple[tuple[str, int], float]) -> Schedule:
    schedule = Schedule()
    for key, seconds in entries:
        schedule.set(key, clock.now() + timedelta(seconds=seconds), clock.now(), clock.monotonic())
    return schedule


def ready(schedule: Schedule, clock: FakeClock) -> list[tuple[str, int]]:
    return [item.key for item in schedule.pop_ready(clock.now(), clock.monotonic())]


def test_schedule_fires_in_due_order_as_the_clock_advances() -> None:
    clock = FakeClock(T0)
    schedule = schedule_on(clock, (("action", 3), 3), (("runtime", 1), 1), (("alarm", 1), 2))
    clock.advance(0.999)
    assert ready(schedule, clock) == []
    clock.advance(0.001)
    assert ready(schedule, clock) == [("runtime", 1)]
    clock.advance(5)
    assert ready(schedule, clock) == [("alarm", 1), ("action", 3)]
    assert len(schedule) == 0 and schedule.next_deadline() is None


def test_schedule_ties_fire_together_in_the_order_they_were_set() -> None:
    clock = FakeClock(T0)
    keys = [("action", n) for n in (5, 2, 9, 1)]
    schedule = schedule_on(clock, *((key, 10) for key in keys))
    clock.advance(10)
    assert ready(schedule, clock) == keys


def test_schedule_cancel_and_reschedule() -> None:
    clock = FakeClock(T0)
    schedule = schedule_on(clock, (("action", 1), 5), (("action", 2), 5), (("action", 3), 5))
    assert schedule.cancel(("action", 1)) is True
    assert schedule.cancel(("action", 1)) is False
    moved_earlier = schedule.set(("action", 2), at(1), clock.now(), clock.monotonic())
    assert moved_earlier is True
    later = schedule.set(("action", 3), at(30), clock.now(), clock.monotonic())
    assert later is False  # the earliest deadline did not move
    assert schedule.due_of(("action", 3)) == at(30)
    clock.advance(1)
    assert ready(schedule, clock) == [("action", 2)]
    clock.advance(10)
    assert ready(schedule, clock) == []  # the entries at 5 s were cancelled or moved
    clock.advance(19)
    assert ready(schedule, clock) == [("action", 3)]


def test_overdue_timers_are_ready_at_once_and_count_late_from_their_due() -> None:
    clock = FakeClock(T0)
    schedule = schedule_on(clock, (("action", 1), -120), (("action", 2), -1), (("action", 3), 1))
    assert schedule.overdue(clock.now()) == 2
    items = schedule.pop_ready(clock.now(), clock.monotonic())
    assert [(item.key, item.late) for item in items] == [
        (("action", 1), 120.0),
        (("action", 2), 1.0),
    ]


def test_a_wall_clock_stepped_forward_does_not_fire_early() -> None:
    clock = FakeClock(T0)
    schedule = schedule_on(clock, (("runtime", 1), 5))
    clock.jump_wall(3600)  # NTP step or a manual change: now() is an hour ahead
    assert ready(schedule, clock) == []
    clock.advance(4.9)
    assert ready(schedule, clock) == []
    clock.advance(0.1)  # five real seconds have passed
    [item] = schedule.pop_ready(clock.now(), clock.monotonic())
    assert item == Ready(("runtime", 1), at(5), 0.0, clock_jumped=False)  # not an hour late


def test_a_wall_clock_stepped_back_does_not_fire_late() -> None:
    clock = FakeClock(T0)
    schedule = schedule_on(clock, (("alarm", 1), 5))
    clock.jump_wall(-3600)
    clock.advance(5)
    [item] = schedule.pop_ready(clock.now(), clock.monotonic())
    assert item == Ready(("alarm", 1), at(5), 0.0, clock_jumped=True)


def test_a_wall_clock_a_little_behind_waits_for_the_rest() -> None:
    clock = FakeClock(T0)
    schedule = schedule_on(clock, (("action", 1), 5))
    clock.jump_wall(-0.01)  # rounding between the two clocks, not a step
    clock.advance(5)
    assert ready(schedule, clock) == []  # never early by the wall clock
    assert schedule.next_deadline() == pytest.approx(5.01)
    clock.advance(0.01)
    assert ready(schedule, clock) == [("action", 1)]
