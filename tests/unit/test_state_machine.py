from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from alarm.state_machine import (
    ARMED_MODES,
    Arm,
    Command,
    Delay,
    DelayElapsed,
    Delays,
    Disarm,
    NoChange,
    Refused,
    StateMachineError,
    Status,
    Transition,
    Trigger,
    Trip,
    decide,
    is_armed,
)

NOW = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)
DELAYS = Delays(exit_seconds=60, entry_seconds=30)
NO_DELAYS = Delays(exit_seconds=0, entry_seconds=0)


def later(seconds: float) -> datetime:
    return NOW + timedelta(seconds=seconds)


ARMING_AWAY = Status("arming", "armed_away", Delay("exit", later(60), 60))
PENDING_AWAY = Status("pending", "armed_away", Delay("entry", later(30), 30))


@pytest.mark.parametrize(
    ("current", "command", "delays", "expected"),
    [
        # arming
        (Status("disarmed"), Arm("armed_away"), DELAYS, ARMING_AWAY),
        (Status("disarmed"), Arm("armed_home"), NO_DELAYS, Status("armed_home")),
        (ARMING_AWAY, Arm("armed_night"), DELAYS,
         Status("arming", "armed_night", Delay("exit", later(60), 60))),
        (Status("armed_home"), Arm("armed_away"), DELAYS, ARMING_AWAY),
        # disarming, from anywhere
        (ARMING_AWAY, Disarm(), DELAYS, Status("disarmed")),
        (Status("armed_night"), Disarm(), DELAYS, Status("disarmed")),
        (PENDING_AWAY, Disarm(), DELAYS, Status("disarmed")),
        (Status("triggered"), Disarm(), DELAYS, Status("disarmed")),
        # sensor trips
        (Status("armed_away"), Trip(), DELAYS, PENDING_AWAY),
        (Status("armed_vacation"), Trip(), NO_DELAYS, Status("triggered")),
        # panic
        (Status("disarmed"), Trigger(), DELAYS, Status("triggered")),
        (PENDING_AWAY, Trigger(), DELAYS, Status("triggered")),
    ],
)  # fmt: skip
def test_transitions(current: Status, command: Command, delays: Delays, expected: Status) -> None:
    outcome = decide(current, command, NOW, delays)
    assert isinstance(outcome, Transition)
    assert outcome.previous == current
    assert outcome.status == expected


@pytest.mark.parametrize(
    ("current", "command", "kind", "reason"),
    [
        (Status("pending", "armed_away", Delay("entry", later(30), 30)), Arm("armed_away"),
         Refused, "cannot arm while pending"),
        (Status("triggered"), Arm("armed_home"), Refused, "disarm first"),
        (Status("armed_home"), Arm("armed_home"), NoChange, "already armed_home"),
        (Status("disarmed"), Disarm(), NoChange, "already disarmed"),
        (Status("disarmed"), Trip(), NoChange, "does nothing"),
        (ARMING_AWAY, Trip(), NoChange, "does nothing"),
        (PENDING_AWAY, Trip(), NoChange, "does nothing"),
        (Status("triggered"), Trigger(), NoChange, "already triggered"),
        (Status("armed_away"), DelayElapsed(later(60)), NoChange, "no delay runs"),
        # a delay restarted since the timer was set: the old timer does nothing
        (ARMING_AWAY, DelayElapsed(later(10)), NoChange, "now ends later"),
    ],
)  # fmt: skip
def test_refusals_and_no_ops(current: Status, command: Command, kind: type, reason: str) -> None:
    outcome = decide(current, command, NOW, DELAYS)
    assert isinstance(outcome, kind)
    assert reason in outcome.reason


@pytest.mark.parametrize(
    ("current", "ends", "after"),
    [(ARMING_AWAY, 60, Status("armed_away")), (PENDING_AWAY, 30, Status("triggered"))],
)
def test_a_delay_ends_at_its_time_never_before(current: Status, ends: float, after: Status) -> None:
    outcome = decide(current, DelayElapsed(later(ends)), later(ends - 0.001), DELAYS)
    assert isinstance(outcome, Refused)
    assert "not yet" in outcome.reason
    done = decide(current, DelayElapsed(later(ends)), later(ends), DELAYS)
    assert isinstance(done, Transition)
    assert done.status == after


def test_a_late_timer_still_completes_the_delay() -> None:
    outcome = decide(PENDING_AWAY, DelayElapsed(later(30)), later(3600), DELAYS)
    assert isinstance(outcome, Transition) and outcome.state == "triggered"


def test_unknown_armed_mode_is_an_error() -> None:
    with pytest.raises(StateMachineError, match="unknown armed mode 'armed_garden'"):
        decide(Status("disarmed"), Arm("armed_garden"), NOW, DELAYS)


@pytest.mark.parametrize(
    ("state", "armed"),
    [("disarmed", False), ("arming", False), *((m, True) for m in ARMED_MODES),
     ("pending", True), ("triggered", True)],
)  # fmt: skip
def test_is_armed(state: str, armed: bool) -> None:
    assert is_armed(state) is armed
