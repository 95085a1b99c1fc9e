"""Recording fakes for the injected collaborators: ``report`` (item 3) and ``on_state`` (item 1)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Any

TIMEOUT = 10.0


class Recorder:
    def __init__(self) -> None:
        self.calls: list[Any] = []
        self._changed = asyncio.Event()

    def _record(self, item: Any) -> None:
        self.calls.append(item)
        self._changed.set()

    async def wait_until(self, predicate: Callable[[list[Any]], bool]) -> None:
        async with asyncio.timeout(TIMEOUT):
            while not predicate(self.calls):
                self._changed.clear()
                await self._changed.wait()


class RecordingReport(Recorder):
    """``report(integration, event, *, error=None, details=None)``, recorded in order."""

    def __call__(
        self,
        integration: str,
        event: str,
        *,
        error: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        self._record((integration, event, error, details or {}))

    def events(self, integration: str) -> list[str]:
        return [event for name, event, _, _ in self.calls if name == integration]

    def errors(self, integration: str, event: str) -> list[str | None]:
        return [e for name, ev, e, _ in self.calls if name == integration and ev == event]

    async def wait_for(self, integration: str, event: str, count: int = 1) -> None:
        await self.wait_until(lambda _: self.events(integration).count(event) >= count)


class RecordingStates(Recorder):
    """``aupdate_entity_state``'s signature; returns True (a change) for each call."""

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
        self._record(
            {"entity_id": entity_id, "state": state, "attributes": attributes,
             "source": source, "name": name, "at": at}
        )  # fmt: skip
        return True

    async def wait_count(self, count: int) -> None:
        await self.wait_until(lambda calls: len(calls) >= count)
