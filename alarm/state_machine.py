"""The alarm panel's state machine. Pure: no Django, no I/O; time comes in as ``now``.

States: ``disarmed``, ``arming`` (the exit delay runs, towards one armed mode), the armed modes
``armed_home``, ``armed_away``, ``armed_night``, ``armed_vacation``, ``pending`` (a sensor
tripped while armed: the entry delay runs) and ``triggered``.

Commands and what they do (anything else is refused with a reason, never a silent change):

========================  ==================================================================
``Arm(mode)``             disarmed, arming or armed -> arming towards ``mode`` for the exit
                          delay, or straight to ``mode`` when the delay is 0 (re-arming the
                          mode already armed is a no-op). Refused while pending or triggered:
                          disarm first.
``Disarm()``              any state but disarmed -> disarmed; cancels a running delay.
``Trip()``                armed -> pending for the entry delay, or triggered when it is 0.
                          Ignored (no-op) when disarmed, arming, pending or triggered.
``Trigger()``             any state but triggered -> triggered at once (panic, a rule).
``DelayElapsed(until)``   arming -> its mode, pending -> triggered, once ``now`` has reached
                          the delay's end; ``until`` is the end the timer waited for: a delay
                          ending later (restarted since) or none is a no-op. Never early:
                          before the delay's end it is refused.
========================  ==================================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

DISARMED = "disarmed"
ARMING = "arming"
ARMED_HOME = "armed_home"
ARMED_AWAY = "armed_away"
ARMED_NIGHT = "armed_night"
ARMED_VACATION = "armed_vacation"
PENDING = "pending"
TRIGGERED = "triggered"

ARMED_MODES = (ARMED_HOME, ARMED_AWAY, ARMED_NIGHT, ARMED_VACATION)
STATES = (DISARMED, ARMING, *ARMED_MODES, PENDING, TRIGGERED)
# "Armed" for the purpose of cancelling delayed actions on disarm: the panel was guarding.
GUARDING = frozenset({*ARMED_MODES, PENDING, TRIGGERED})

DelayKind = Literal["exit", "entry"]


def is_armed(state: str) -> bool:
    """True for the armed modes and for pending/triggered (the panel was guarding)."""
    return state in GUARDING


@dataclass(frozen=True)
class Delay:
    kind: DelayKind
    until: datetime
    seconds: float


@dataclass(frozen=True)
class Status:
    """What the machine needs to know about the panel now."""

    state: str = DISARMED
    target: str = ""  # the armed mode ``arming`` leads to
    delay: Delay | None = None


@dataclass(frozen=True)
class Delays:
    exit_seconds: float = 60.0
    entry_seconds: float = 30.0


# --- commands ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Arm:
    mode: str


@dataclass(frozen=True)
class Disarm:
    pass


@dataclass(frozen=True)
class Trip:
    pass


@dataclass(frozen=True)
class Trigger:
    pass


@dataclass(frozen=True)
class DelayElapsed:
    until: datetime  # the end of the delay the timer waited for


Command = Arm | Disarm | Trip | Trigger | DelayElapsed


@dataclass(frozen=True)
class Transition:
    """The panel moves ``previous`` -> ``status``; ``reason`` names the command that did it."""

    previous: Status
    status: Status
    reason: str

    @property
    def state(self) -> str:
        return self.status.state


@dataclass(frozen=True)
class Refused:
    reason: str


@dataclass(frozen=True)
class NoChange:
    reason: str


Outcome = Transition | Refused | NoChange


class StateMachineError(ValueError):
    """A command this machine does not know, or an armed mode that does not exist."""


def decide(current: Status, command: Command, now: datetime, delays: Delays) -> Outcome:
    """What ``command`` does to ``current`` at ``now``."""
    match command:
        case Arm(mode=mode):
            return _arm(current, mode, now, delays)
        case Disarm():
            if current.state == DISARMED:
                return NoChange("already disarmed")
            return Transition(current, Status(DISARMED), "disarm")
        case Trip():
            return _trip(current, now, delays)
        case Trigger():
            if current.state == TRIGGERED:
                return NoChange("already triggered")
            return Transition(current, Status(TRIGGERED), "trigger")
        case DelayElapsed(until=until):
            return _delay_elapsed(current, until, now)
    raise StateMachineError(f"unknown command {command!r}")


def _arm(current: Status, mode: str, now: datetime, delays: Delays) -> Outcome:
    if mode not in ARMED_MODES:
        raise StateMachineError(f"unknown armed mode {mode!r}; known: {', '.join(ARMED_MODES)}")
    if current.state in (PENDING, TRIGGERED):
        return Refused(f"cannot arm while {current.state}: disarm first")
    if current.state == mode:
        return NoChange(f"already {mode}")
    if delays.exit_seconds <= 0:
        return Transition(current, Status(mode), f"arm {mode}")
    delay = Delay("exit", now + timedelta(seconds=delays.exit_seconds), delays.exit_seconds)
    return Transition(current, Status(ARMING, mode, delay), f"arm {mode}")


def _trip(current: Status, now: datetime, delays: Delays) -> Outcome:
    if current.state not in ARMED_MODES:
        return NoChange(f"a trip while {current.state} does nothing")
    if delays.entry_seconds <= 0:
        return Transition(current, Status(TRIGGERED), "trip")
    delay = Delay("entry", now + timedelta(seconds=delays.entry_seconds), delays.entry_seconds)
    return Transition(current, Status(PENDING, current.state, delay), "trip")


def _delay_elapsed(current: Status, until: datetime, now: datetime) -> Outcome:
    delay = current.delay
    if delay is None:
        return NoChange("no delay runs now")
    if delay.until > until:
        return NoChange(f"the {delay.kind} delay now ends later, at {delay.until.isoformat()}")
    if now < delay.until:
        return Refused(f"the {delay.kind} delay ends at {delay.until.isoformat()}, not yet")
    if current.state == ARMING:
        return Transition(current, Status(current.target), "exit delay ended")
    if current.state == PENDING:
        return Transition(current, Status(TRIGGERED), "entry delay ended")
    return NoChange(f"a delay while {current.state} leads nowhere")
