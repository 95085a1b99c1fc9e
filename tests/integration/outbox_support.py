"""What the outbox's integration tests share: simulated workers over a fake provider, rows."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from notifications.dispatcher import OutboxComponent, OutboxSettings
from notifications.models import NotificationDelivery, NotificationLog, NotificationProvider
from services.clock import FakeClock
from services.listener import Listener
from tests.fakes.provider_servers import FakeProviders, running_fake_providers

DbCall = Callable[..., Awaitable[Any]]


class Outbox:
    """A listener and outbox components (one per simulated worker) over one fake provider."""

    def __init__(self, fake: FakeProviders, clock: FakeClock) -> None:
        self.fake = fake
        self.clock = clock
        self.stopping = asyncio.Event()
        self.listener = Listener(backoff_base=0.01, backoff_cap=0.05)
        self.components: list[OutboxComponent] = []
        self.tasks: list[asyncio.Task[None]] = []

    async def start(self, workers: int = 1, **settings: Any) -> OutboxComponent:
        self.tasks.append(asyncio.create_task(self.listener.run(self.stopping)))
        for n in range(workers):
            component = OutboxComponent(
                self.clock, f"w{n}", self.listener.subscribe,
                OutboxSettings(allow_loopback=True, **settings),
            )  # fmt: skip
            self.components.append(component)
            self.tasks.append(asyncio.create_task(component.run(self.stopping)))
        await asyncio.wait_for(self.listener.ready.wait(), 5)
        return self.components[0]

    async def stop(self) -> None:
        self.stopping.set()
        await asyncio.wait_for(asyncio.gather(*self.tasks), 15)


@pytest.fixture
async def outbox() -> AsyncIterator[Outbox]:
    """A listener and outbox components over one fake provider (registered by conftest)."""
    async with running_outbox() as box:
        yield box


@contextlib.asynccontextmanager
async def running_outbox() -> AsyncIterator[Outbox]:
    # Rows are stamped with the real time; the fake clock runs an hour ahead so they are due.
    clock = FakeClock(datetime.now(UTC) + timedelta(hours=1))
    async with running_fake_providers() as fake:
        box = Outbox(fake, clock)
        yield box
        await box.stop()


def make_provider(fake: FakeProviders, name: str = "hook", kind: str = "webhook", **kw: Any) -> int:
    config = fake.config_for(kind)
    return NotificationProvider.objects.create(name=name, type=kind, config=config, **kw).pk


def enqueue(provider_id: int | None, n: int = 1, **fields: Any) -> list[int]:
    rows = [
        NotificationDelivery(provider_id=provider_id, title=f"t{i}", message=f"m{i}", **fields)
        for i in range(n)
    ]
    return [row.pk for row in NotificationDelivery.objects.bulk_create(rows)]


def row(pk: int) -> dict[str, Any]:
    return dict(NotificationDelivery.objects.filter(pk=pk).values().get())


def outcomes(pk: int) -> list[str]:
    return list(
        NotificationLog.objects.filter(delivery_id=pk)
        .order_by("id")
        .values_list("outcome", flat=True)
    )
