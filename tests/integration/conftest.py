from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from services.clock import FakeClock
from services.cron import CronComponent
from services.dbthread import AsyncStore
from services.execution import Executor
from services.registry import Registry, bind_time_zone
from tests.fakes.recorders import WatchedClock
from tests.integration.outbox_support import outbox  # noqa: F401  (a fixture)
from tests.integration.ws_harness import Harnesses, home_assistant, zwavejs

START = datetime(2025, 6, 2, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> WatchedClock:
    """A FakeClock; watched, so that a test can wait for the deadline of a wait in progress."""
    return WatchedClock(START)


# The fake servers, started, with the entities the WebSocket clients' tests know.
ha = pytest.fixture(home_assistant, name="ha")
zw = pytest.fixture(zwavejs, name="zw")


@pytest.fixture
async def harnesses(clock: WatchedClock) -> AsyncIterator[Harnesses]:
    """WebSocket clients on ``clock``, each stopped at the end of the test."""
    made = Harnesses(clock)
    yield made
    await made.stop_all()


@pytest.fixture
async def stores() -> AsyncIterator[list[AsyncStore]]:
    """AsyncStores to hand out; each has its own thread and connection, closed at the end."""
    made: list[AsyncStore] = []
    yield made
    for store in made:
        await store.close()


@pytest.fixture
def db_call(stores: list[AsyncStore]) -> Callable[..., Awaitable[Any]]:
    """Run a sync ORM function on a store's thread (closed at the end, unlike asgiref's)."""

    async def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not stores:
            stores.append(AsyncStore())
        return await stores[0].call(fn, *args, **kwargs)

    return call


@pytest.fixture
def make_cron(stores: list[AsyncStore], clock: FakeClock) -> Callable[..., CronComponent]:
    """A cron component over ``registry`` with its own store, like one worker replica."""

    def make(
        registry: Registry, *, lease: float = 30.0, worker: str = "w1", **kw: object
    ) -> CronComponent:
        store = AsyncStore()
        stores.append(store)
        executor = Executor(store, clock, worker, lease=lease, max_threads=4)
        specs = [bind_time_zone(spec, UTC) for spec in registry]
        return CronComponent(specs, store, executor, clock, **kw)  # type: ignore[arg-type]

    return make


class Running:
    """A component's run() as a task, stopped and awaited at the end of the test."""

    def __init__(self) -> None:
        self.stopping = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []

    def start(self, component: CronComponent) -> None:
        self.tasks.append(asyncio.create_task(component.run(self.stopping)))

    async def stop(self) -> None:
        self.stopping.set()
        async with asyncio.timeout(10):
            await asyncio.gather(*self.tasks)


@pytest.fixture
async def running() -> AsyncIterator[Running]:
    runs = Running()
    yield runs
    await runs.stop()
