"""Fixtures and helpers of the alarm's integration tests (imported by their modules)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from alarm.models import Entity, Rule, RuleRuntime
from alarm.timers import AlarmTimers
from services.clock import FakeClock
from services.dbthread import AsyncStore
from services.listener import Listener

DbCall = Callable[..., Awaitable[Any]]

DOOR = "binary_sensor.front_door"
DOOR_OPEN = {"entity_id": DOOR, "equals": "on"}


def door_open_for(seconds: float) -> dict[str, Any]:
    return {"for": {"seconds": seconds, "condition": DOOR_OPEN}}


def event_action(message: str = "door open", **extra: Any) -> dict[str, Any]:
    return {"type": "emit_event", "message": message, **extra}


def make_rule(conditions: dict[str, Any], actions: list[dict[str, Any]], **fields: Any) -> Rule:
    """A rule (its entities declared first: rules refuse unknown entity ids)."""
    from alarm.conditions import referenced_entity_ids

    for entity_id in referenced_entity_ids(conditions):
        Entity.objects.get_or_create(entity_id=entity_id, defaults={"state": "off"})
    return Rule.objects.create(
        name=fields.pop("name", "rule"), conditions=conditions, actions=actions, **fields
    )


def runtime_of(rule_id: int, node: str = "conditions.for") -> RuleRuntime:
    return RuleRuntime.objects.get(rule_id=rule_id, node=node)


class Worker:
    """One simulated worker replica: its own listener, timer component and ORM thread."""

    def __init__(self, clock: FakeClock, name: str) -> None:
        self.listener = Listener(backoff_base=0.01, backoff_cap=0.05)
        self.orm = AsyncStore()
        self.timers = AlarmTimers(clock, name, self.listener.subscribe, orm=self.orm)
        self.stopping = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []

    async def start(self) -> AlarmTimers:
        self.tasks = [
            asyncio.create_task(self.listener.run(self.stopping)),
            asyncio.create_task(self.timers.run(self.stopping)),
        ]
        await asyncio.wait_for(self.timers.wait_loaded(), 10)
        return self.timers

    async def stop(self) -> None:
        self.stopping.set()
        if self.tasks:
            await asyncio.wait_for(asyncio.gather(*self.tasks), 15)
        self.tasks = []
        await self.orm.close()


class Alarm:
    """Workers over one fake clock that starts at the real time (rows are stamped with it)."""

    def __init__(self) -> None:
        now = datetime.now(UTC)
        self.start_at = now.replace(microsecond=0) + timedelta(seconds=1)
        self.clock = FakeClock(self.start_at)
        self.workers: list[Worker] = []

    async def start(self, replicas: int = 1) -> AlarmTimers:
        started = [Worker(self.clock, f"w{len(self.workers) + n}") for n in range(replicas)]
        self.workers += started
        for worker in started:
            await worker.start()
        return started[0].timers

    async def stop(self) -> None:
        for worker in self.workers:
            await worker.stop()
        self.workers = []

    def at(self, seconds: float = 0.0) -> datetime:
        """``seconds`` after the (fake) clock's start."""
        return self.start_at + timedelta(seconds=seconds)


@pytest.fixture
async def alarm() -> AsyncIterator[Alarm]:
    harness = Alarm()
    yield harness
    await harness.stop()


async def quiet(alarm: Alarm) -> None:
    """Return once every worker's timer loop sleeps again and no fire is in flight."""
    async with asyncio.timeout(10):
        for worker in alarm.workers:
            await worker.timers.wait_quiet()


async def waited(awaitable: Awaitable[Any], patience: float = 10.0) -> Any:
    return await asyncio.wait_for(awaitable, patience)


async def wait_total(alarm: Alarm, outcome: str, count: int, patience: float = 10.0) -> int:
    """Return once the workers together had ``count`` timers with ``outcome``."""

    def total() -> int:
        return sum(worker.timers.outcomes[outcome] for worker in alarm.workers)

    waiters = [
        asyncio.ensure_future(worker.timers.wait_until(lambda: total() >= count))
        for worker in alarm.workers
    ]
    try:
        await asyncio.wait(waiters, timeout=patience, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
    assert total() >= count, f"{total()} of {count} {outcome} within {patience} s"
    return total()
