"""Recording stand-ins for the two callables an integration client gets: the status hub's
``report`` and the alarm app's ``aupdate_entity_state`` (``on_state``), with waits that wake
on every call (no sleeps)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.clock import FakeClock


class _Waitable:
    def __init__(self) -> None:
        self._changed = asyncio.Event()

    def _notify(self) -> None:
        self._changed.set()

    async def wait_for(self, condition: Callable[[], bool], timeout: float = 5.0) -> None:  # noqa: ASYNC109
        try:
            async with asyncio.timeout(timeout):
                while not condition():
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise TimeoutError(f"condition not met in {timeout} s; recorded: {self!r}") from None


@dataclass(frozen=True)
class Reported:
    integration: str
    event: str
    error: str | None
    details: dict[str, Any] | None


class RecordingReport(_Waitable):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[Reported] = []

    def __call__(
        self,
        integration: str,
        event: str,
        *,
        error: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        self.calls.append(Reported(integration, event, error, details))
        self._notify()

    def __repr__(self) -> str:
        return f"RecordingReport({[(c.event, c.error) for c in self.calls]})"

    @property
    def events(self) -> list[str]:
        return [c.event for c in self.calls]

    @property
    def last(self) -> Reported:
        return self.calls[-1]

    def count(self, event: str) -> int:
        return self.events.count(event)

    async def wait_for_event(self, event: str, count: int = 1, timeout: float = 5.0) -> Reported:  # noqa: ASYNC109
        await self.wait_for(lambda: self.count(event) >= count, timeout)
        return [c for c in self.calls if c.event == event][count - 1]


@dataclass(frozen=True)
class StateCall:
    entity_id: str
    state: str
    attributes: dict[str, Any] | None
    source: str
    name: str | None
    at: datetime | None


class RecordingStates(_Waitable):
    """Behaves like ``aupdate_entity_state``: change-only, True when something changed.

    ``fail_for`` holds entity ids whose call raises (a database error, say).
    """

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[StateCall] = []
        self.current: dict[str, tuple[str, dict[str, Any]]] = {}
        self.fail_for: set[str] = set()

    def __repr__(self) -> str:
        return f"RecordingStates({len(self.calls)} calls, current={self.current!r:.300})"

    async def __call__(
        self,
        entity_id: str,
        state: str,
        attributes: dict[str, Any] | None = None,
        *,
        source: str,
        name: str | None = None,
        at: datetime | None = None,
    ) -> bool:
        self.calls.append(StateCall(entity_id, state, attributes, source, name, at))
        self._notify()
        if entity_id in self.fail_for:
            raise RuntimeError(f"database unavailable for {entity_id}")
        new = (state, dict(attributes or {}))
        changed = self.current.get(entity_id) != new
        self.current[entity_id] = new
        return changed

    def state_of(self, entity_id: str) -> str | None:
        entry = self.current.get(entity_id)
        return entry[0] if entry else None

    def calls_for(self, entity_id: str) -> list[StateCall]:
        return [c for c in self.calls if c.entity_id == entity_id]


class RecordingRng(_Waitable):
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

    async def wait_calls(self, count: int, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        await self.wait_for(lambda: self.calls >= count, timeout)


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
        self._waitable = _Waitable()

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

    async def wait_for_deadlines(self, expected: list[float], timeout: float = 5.0) -> None:  # noqa: ASYNC109
        wanted = sorted(round(d, 6) for d in expected)
        try:
            await self._waitable.wait_for(lambda: self.deadlines() == wanted, timeout)
        except TimeoutError:
            found = self.deadlines()
            raise TimeoutError(f"waits in progress end at {found}, not {wanted}") from None
