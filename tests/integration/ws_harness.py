"""A client's run() as a task, with the recorders and the fake clock it was built with."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from services.integrations.ws_client import WebSocketClient
from tests.fakes.ws_recorders import RecordingReport, RecordingRng, RecordingStates, WatchedClock


@dataclass
class Harness:
    client: WebSocketClient
    clock: WatchedClock
    report: RecordingReport
    states: RecordingStates
    rng: RecordingRng
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    def start(self) -> Harness:
        self.task = asyncio.create_task(self.client.run(self.stopping))
        return self

    async def stop(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        self.stopping.set()
        if self.task is not None:
            async with asyncio.timeout(timeout):
                await self.task

    async def waits_until(self, *seconds_from_now: float) -> None:
        """Wait until the client's only waits in progress end ``seconds_from_now``."""
        now = self.clock.monotonic()
        await self.clock.wait_for_deadlines([now + s for s in seconds_from_now])

    def health(self) -> dict[str, Any]:
        return self.client.health()


MakeHarness = Callable[..., Harness]


@contextlib.asynccontextmanager
async def harness_factory(clock: WatchedClock) -> AsyncIterator[MakeHarness]:
    """Yields ``make(ClientClass, settings, **kw)``; every harness made is stopped at the end."""
    made: list[Harness] = []

    def make(client_class: type[WebSocketClient], settings: Any, **kwargs: Any) -> Harness:
        report, states, rng = RecordingReport(), RecordingStates(), RecordingRng(0.0)
        on_state = kwargs.pop("on_state", states)  # another on_state: harness.states unused
        client = client_class(
            settings, clock=clock, report=report, on_state=on_state, rng=rng, **kwargs
        )
        harness = Harness(client, clock, report, states, rng)
        made.append(harness)
        return harness

    try:
        yield make
    finally:
        for harness in made:
            await harness.stop()
