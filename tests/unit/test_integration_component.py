"""The integration wrapper: runs a client while leading, restarts it only on a real change."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from services.clock import FakeClock
from services.integrations.component import CHANNEL, ClientType, IntegrationComponent
from services.integrations.config_spec import EffectiveConfig
from services.integrations.leadership import Term

TIMEOUT = 5.0


class FakeLeadership:
    def __init__(self) -> None:
        self.term: Term | None = None
        self._changed = asyncio.Event()

    @property
    def leading(self) -> bool:
        return self.term is not None and not self.term.ended.is_set()

    def grant(self) -> Term:
        self.term = Term()
        self._changed.set()
        self._changed = asyncio.Event()
        return self.term

    def revoke(self) -> None:
        assert self.term is not None
        self.term.ended.set()

    async def wait_term(self, stopping: asyncio.Event) -> Term | None:
        while not self.leading:
            waits = {
                asyncio.ensure_future(self._changed.wait()),
                asyncio.ensure_future(stopping.wait()),
            }
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for w in waits:
                w.cancel()
            if stopping.is_set():
                return None
        return self.term


@dataclass(frozen=True)
class Settings:
    url: str


class RecordingClient:
    """Records its life; ``crash`` makes run() raise once started."""

    instances: list[RecordingClient] = []

    def __init__(self, settings: Settings, *, clock: Any, report: Any, on_state: Any) -> None:
        self.settings = settings
        self.started = asyncio.Event()
        self.stopped = asyncio.Event()
        self.crash = settings.url == "crash"
        RecordingClient.instances.append(self)

    async def run(self, stopping: asyncio.Event) -> None:
        self.started.set()
        if self.crash:
            raise RuntimeError("boom")
        await stopping.wait()
        self.stopped.set()

    def health(self) -> dict[str, Any]:
        return {"url": self.settings.url}


def build(config: EffectiveConfig) -> Settings:
    if config.values.get("url") == "bad":
        raise ValueError("url: unusable")
    return Settings(str(config.values["url"]))


class Rig:
    def __init__(self) -> None:
        self.config = EffectiveConfig("demo", True, True, {"url": "a", "unused": 1}, "row")
        self.loads = 0
        self.reports: list[tuple[Any, ...]] = []
        self.leadership = FakeLeadership()
        self.notify: Callable[[str], None] | None = None
        self.on_connect: Callable[[], None] | None = None
        self.stopping = asyncio.Event()
        self.loaded = asyncio.Event()
        self.component = IntegrationComponent(
            ClientType("demo", RecordingClient, build),
            leadership=self.leadership,
            load=self.load,
            subscribe=self.subscribe,
            clock=FakeClock(),
            report=lambda *a, **k: self.reports.append((*a, k)),
            on_state=self.on_state,
            stop_timeout=1.0,
        )
        self.task: asyncio.Task[None] | None = None

    async def load(self, kind: str) -> EffectiveConfig:
        assert kind == "demo"
        self.loads += 1
        self.loaded.set()
        return self.config

    async def on_state(self, *args: Any, **kwargs: Any) -> bool:
        return True

    def subscribe(self, channel: str, on_notify: Any, on_connect: Any) -> Callable[[], None]:
        assert channel == CHANNEL
        self.notify, self.on_connect = on_notify, on_connect
        return lambda: None

    def start(self) -> None:
        self.task = asyncio.create_task(self.component.run(self.stopping))

    async def change(self, payload: str = "demo", **config: Any) -> None:
        """Commit a new configuration and NOTIFY; returns once it has been re-read."""
        if config:
            self.config = EffectiveConfig(**{**vars(self.config), **config})
        self.loaded.clear()
        assert self.notify is not None
        self.notify(payload)
        async with asyncio.timeout(TIMEOUT):
            await self.loaded.wait()
        reloading = self.component._reloading
        await until(lambda: reloading is None or reloading.done())


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    RecordingClient.instances = []
    rig = Rig()
    yield rig
    rig.stopping.set()
    if rig.task is not None:
        async with asyncio.timeout(TIMEOUT):
            await asyncio.gather(rig.task, return_exceptions=True)


async def until(predicate: Callable[[], bool]) -> None:
    """Yield to the loop (no time passes) until ``predicate`` holds: the wrapper's state moves
    in tasks of its own, with no event to wait on."""
    async with asyncio.timeout(TIMEOUT):
        while not predicate():  # noqa: ASYNC110 - sleep(0) yields, it does not wait
            await asyncio.sleep(0)


async def started(n: int) -> RecordingClient:
    await until(lambda: len(RecordingClient.instances) >= n)
    client = RecordingClient.instances[n - 1]
    async with asyncio.timeout(TIMEOUT):
        await client.started.wait()
    return client


async def test_no_client_runs_until_this_worker_leads(rig: Rig) -> None:
    rig.start()
    async with asyncio.timeout(TIMEOUT):
        await rig.loaded.wait()
    for _ in range(20):
        await asyncio.sleep(0)
    assert RecordingClient.instances == [] and rig.reports == []
    assert rig.component.health()["leader"] is False
    rig.leadership.grant()
    client = await started(1)
    assert client.settings == Settings("a")
    assert rig.reports == [("demo", "configured", {"details": {"enabled": True}})]
    assert rig.component.health()["client"] == {"url": "a"}


async def test_only_a_real_settings_change_restarts_the_client(rig: Rig) -> None:
    rig.leadership.grant()
    rig.start()
    first = await started(1)
    await rig.change(values={"url": "a", "unused": 2})  # builds equal settings
    await rig.change(source="environment")
    loads = rig.loads
    rig.config = EffectiveConfig(**{**vars(rig.config), "values": {"url": "z"}})
    assert rig.notify is not None
    rig.notify("other_kind")  # not ours: not even re-read
    for _ in range(20):
        await asyncio.sleep(0)
    assert rig.loads == loads and rig.component.desired is not None
    assert rig.component.desired.settings == Settings("a")
    assert len(RecordingClient.instances) == 1 and not first.stopped.is_set()
    await rig.change(values={"url": "b"})
    second = await started(2)
    assert first.stopped.is_set() and second.settings == Settings("b")
    assert rig.component.starts == 2


async def test_disabling_stops_and_enabling_starts(rig: Rig) -> None:
    rig.leadership.grant()
    rig.start()
    first = await started(1)
    await rig.change(enabled=False)
    await until(lambda: ("demo", "configured", {"details": {"enabled": False}}) in rig.reports)
    assert first.stopped.is_set() and rig.component.client is None
    await rig.change(enabled=True)
    await started(2)


async def test_unconfigured_and_invalid_configurations_are_reported_and_run_nothing(
    rig: Rig,
) -> None:
    rig.config = EffectiveConfig("demo", False, False, {"url": ""}, "none")
    rig.leadership.grant()
    rig.start()
    await until(lambda: bool(rig.reports))
    assert rig.reports == [("demo", "unconfigured", {})]
    await rig.change(configured=True, enabled=True, values={"url": "bad"}, source="row")
    await until(lambda: len(rig.reports) >= 3)
    assert rig.reports[1:] == [
        ("demo", "configured", {"details": {"enabled": True}}),
        ("demo", "disconnected", {"error": "invalid configuration: url: unusable"}),
    ]
    assert RecordingClient.instances == []
    assert rig.component.health()["config_error"] == "url: unusable"


async def test_losing_the_leadership_stops_the_client_at_once(rig: Rig) -> None:
    rig.leadership.grant()
    rig.start()
    first = await started(1)
    rig.leadership.revoke()
    await until(lambda: rig.component.client is None)
    assert first.stopped.is_set()
    rig.leadership.grant()
    await started(2)


async def test_a_reconnect_of_the_listener_re_reads_the_configuration(rig: Rig) -> None:
    rig.leadership.grant()
    rig.start()
    await started(1)
    rig.config = EffectiveConfig(**{**vars(rig.config), "values": {"url": "c"}})
    assert rig.on_connect is not None
    rig.on_connect()
    second = await started(2)
    assert second.settings == Settings("c")


async def test_a_crashing_client_takes_the_component_down_for_the_runner(rig: Rig) -> None:
    rig.config = EffectiveConfig(**{**vars(rig.config), "values": {"url": "crash"}})
    rig.leadership.grant()
    rig.start()
    assert rig.task is not None
    with pytest.raises(RuntimeError, match="boom"):
        async with asyncio.timeout(TIMEOUT):
            await rig.task
