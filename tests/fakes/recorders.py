"""Recording stand-ins for what the integrations are given, with waits that wake on every
call (no sleeps): the status hub's ``report`` (``RecordingReport``), the alarm app's
``aupdate_entity_state`` (``RecordingStates``, an ``on_state``), a jitter source
(``RecordingRng``), a clock that knows its sleepers' deadlines (``WatchedClock``), and
``Recorder``, the plain list of calls the others are made of.

``RecordingReport`` and ``RecordingStates`` take their arguments as the real callables do:
they bind each call to the real signature, so a call the real one would refuse raises the
same TypeError here, and a parameter added there is noticed here (the record no longer
fits) instead of a copied signature drifting away from it.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from alarm.services import aupdate_entity_state
from realtime.hub import StatusHub
from services.clock import FakeClock
from tests.fakes.waitable import TIMEOUT, Waitable


class Recorder[T](Waitable):
    """Whatever a fake collaborator is handed, in order: ``record`` it, wait for it."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[T] = []

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.calls!r:.300})"

    def record(self, item: T) -> None:
        self.calls.append(item)
        self._notify()

    async def wait_count(self, count: int, timeout: float = TIMEOUT) -> None:  # noqa: ASYNC109
        await self.wait_for(lambda: len(self.calls) >= count, timeout)


def _arguments(real: inspect.Signature, args: Any, kwargs: Any) -> dict[str, Any]:
    """A call's arguments by name, defaults filled in, as ``real`` would have taken them."""
    bound = real.bind(*args, **kwargs)
    bound.apply_defaults()
    return dict(bound.arguments)


def _without_self(method: Callable[..., Any]) -> inspect.Signature:
    real = inspect.signature(method)
    return real.replace(parameters=list(real.parameters.values())[1:])


@dataclass(frozen=True)
class Reported:
    integration: str
    event: str
    error: str | None
    details: dict[str, Any] | None


class RecordingReport(Recorder[Reported]):
    """``StatusHub.report(integration, event, *, error=None, details=None)``, recorded.

    Its filters take an ``integration``, for a recorder several of them share (None: all)."""

    signature = _without_self(StatusHub.report)  # the real one's; see the module docstring

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        self.record(Reported(**_arguments(self.signature, args, kwargs)))

    def __repr__(self) -> str:
        return f"RecordingReport({[(c.integration, c.event, c.error) for c in self.calls]})"

    def calls_for(self, integration: str | None) -> list[Reported]:
        return [c for c in self.calls if integration is None or c.integration == integration]

    def events(self, integration: str | None = None) -> list[str]:
        return [c.event for c in self.calls_for(integration)]

    def errors(self, event: str, *, integration: str | None = None) -> list[str | None]:
        return [c.error for c in self.calls_for(integration) if c.event == event]

    @property
    def last(self) -> Reported:
        return self.calls[-1]

    async def wait_for_event(
        self, event: str, count: int = 1, *, integration: str | None = None,
        timeout: float = TIMEOUT,  # noqa: ASYNC109
    ) -> Reported:  # fmt: skip
        """Wait for the ``count``-th ``event`` and return it."""
        await self.wait_for(lambda: self.events(integration).count(event) >= count, timeout)
        return [c for c in self.calls_for(integration) if c.event == event][count - 1]


@dataclass(frozen=True)
class StateCall:
    entity_id: str
    state: str
    attributes: dict[str, Any] | None
    source: str
    name: str | None
    at: datetime | None


class RecordingStates(Recorder[StateCall]):
    """Behaves like ``aupdate_entity_state``: change-only, True when something changed.

    ``fail_for`` holds entity ids whose call raises (a database error, say).
    """

    signature = inspect.signature(aupdate_entity_state)

    def __init__(self) -> None:
        super().__init__()
        self.current: dict[str, tuple[str, dict[str, Any]]] = {}
        self.fail_for: set[str] = set()

    def __repr__(self) -> str:
        return f"RecordingStates({len(self.calls)} calls, current={self.current!r:.300})"

    async def __call__(self, *args: Any, **kwargs: Any) -> bool:
        call = StateCall(**_arguments(self.signature, args, kwargs))
        self.record(call)
        if call.entity_id in self.fail_for:
            raise RuntimeError(f"database unavailable for {call.entity_id}")
        new = (call.state, dict(call.attributes or {}))
        changed = self.current.get(call.entity_id) != new
        self.current[call.entity_id] = new
        return changed

    def state_of(self, entity_id: str) -> str | None:
        entry = self.current.get(entity_id)
        return entry[0] if entry else None

    def calls_for(self, entity_id: str) -> list[StateCall]:
        return [c for c in self.calls if c.entity_id == entity_id]


class RecordingRng(Waitable):
    """A jitter source returning ``value``; a client calls it just before each backoff wait,
    so a test that waited for the n-th call knows the client is about to sleep."""

    def __init__(self, value: float = 0.0) -> None:
        super().__init__()
        self.value = value
        self.calls = 0

    def __repr__(self) -> str:
        return f"RecordingRng(calls={self.calls})"

    def __call__(self) -> float:
        self.calls += 1
        self._notify()
        return self.value


class WatchedClock(FakeClock):
    """A FakeClock that knows the deadline (monotonic) of every sleep in progress.

    A client's waits follow one another (handshake, heartbeat, pong, backoff); counting
    sleepers cannot tell them apart, their deadlines can:
    ``await clock.wait_for_deadlines([30.0])`` returns once the only wait in progress ends
    at 30 s.
    """

    def __init__(self, start: datetime | None = None) -> None:
        super().__init__(start)
        self._active: dict[int, float] = {}
        self._tokens = itertools.count()
        self._waitable = Waitable()

    async def sleep(self, seconds: float) -> None:
        token = next(self._tokens)
        self._active[token] = round(self.monotonic() + max(seconds, 0.0), 6)
        self._waitable._notify()
        try:
            await super().sleep(seconds)
        finally:
            del self._active[token]
            self._waitable._notify()

    def deadlines(self) -> list[float]:
        return sorted(self._active.values())

    async def wait_for_deadlines(self, expected: list[float], timeout: float = TIMEOUT) -> None:  # noqa: ASYNC109
        wanted = sorted(round(d, 6) for d in expected)
        try:
            await self._waitable.wait_for(lambda: self.deadlines() == wanted, timeout)
        except TimeoutError:
            found = self.deadlines()
            raise TimeoutError(f"waits in progress end at {found}, not {wanted}") from None
