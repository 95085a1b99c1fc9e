from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest

from services.runner import Runner

TIMEOUT = 5.0  # a safety net for awaits that must complete; never a synchronisation point

Events = Callable[[str], list[logging.LogRecord]]


@pytest.fixture
def events(caplog: pytest.LogCaptureFixture) -> Events:
    caplog.set_level(logging.DEBUG, logger="services.runner")

    def of(key: str) -> list[logging.LogRecord]:
        return [r for r in caplog.records if getattr(r, "event", None) == key]

    return of


class Scripted:
    """Crashes on its first ``crashes`` runs, then works until asked to stop."""

    def __init__(
        self, name: str, *, crashes: int = 0, health: dict[str, Any] | None = None
    ) -> None:
        self.name = name
        self.crashes = crashes
        self.runs = 0
        self.steady = asyncio.Event()
        self._health = health or {}

    async def run(self, stopping: asyncio.Event) -> None:
        self.runs += 1
        if self.runs <= self.crashes:
            raise RuntimeError(f"boom {self.runs}")
        self.steady.set()
        await stopping.wait()

    def health(self) -> dict[str, Any]:
        return self._health


class Stubborn:
    """Ignores ``stopping``: only cancellation ends it; its finally block awaits once."""

    def __init__(self, name: str = "stubborn") -> None:
        self.name = name
        self.started = asyncio.Event()
        self.cleaned_up = False
        self.cancelled = False

    async def run(self, stopping: asyncio.Event) -> None:
        self.started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        finally:
            await asyncio.sleep(0)  # a final write gets final_grace to complete
            self.cleaned_up = True

    def health(self) -> dict[str, Any]:
        return {}


async def start(runner: Runner) -> asyncio.Task[int]:
    task = asyncio.create_task(runner.run())
    await asyncio.sleep(0)
    return task


async def stop(runner: Runner, task: asyncio.Task[int]) -> int:
    runner.stop()
    return await asyncio.wait_for(task, timeout=TIMEOUT)


async def test_components_run_concurrently(events: Events) -> None:
    a_started, b_started = asyncio.Event(), asyncio.Event()
    met: list[str] = []

    class Peer:
        def __init__(self, name: str, mine: asyncio.Event, theirs: asyncio.Event) -> None:
            self.name, self.mine, self.theirs = name, mine, theirs

        async def run(self, stopping: asyncio.Event) -> None:
            self.mine.set()
            await self.theirs.wait()  # deadlocks unless the other one runs at the same time
            met.append(self.name)
            await stopping.wait()

        def health(self) -> dict[str, Any]:
            return {}

    runner = Runner([Peer("a", a_started, b_started), Peer("b", b_started, a_started)])
    task = await start(runner)
    await asyncio.wait_for(asyncio.gather(a_started.wait(), b_started.wait()), timeout=TIMEOUT)
    for _ in range(5):
        await asyncio.sleep(0)
    assert sorted(met) == ["a", "b"]
    assert await stop(runner, task) == 0
    assert not events("runner.component_crashed")
    [started] = events("runner.started")
    assert started.components == ["a", "b"]  # type: ignore[attr-defined]
    assert len(events("runner.stopped")) == 1


async def test_crashing_component_is_restarted_while_others_keep_running(events: Events) -> None:
    flaky = Scripted("flaky", crashes=2)
    steady = Scripted("steady")
    runner = Runner([flaky, steady], backoff_base=0.01)
    task = await start(runner)
    await asyncio.wait_for(flaky.steady.wait(), timeout=TIMEOUT)

    assert flaky.runs == 3
    assert steady.runs == 1  # never restarted, never interrupted
    assert not task.done()
    crashes = events("runner.component_crashed")
    assert [r.component for r in crashes] == ["flaky", "flaky"]  # type: ignore[attr-defined]
    assert all(r.levelno == logging.ERROR and r.exc_info for r in crashes)
    assert runner.states["flaky"].restarts == 2
    assert runner.states["flaky"].state == "running"
    assert runner.states["flaky"].last_error == "RuntimeError: boom 2"
    assert runner.states["steady"].restarts == 0
    assert runner.states["steady"].last_error is None
    assert await stop(runner, task) == 0


async def test_component_returning_unasked_counts_as_a_crash(events: Events) -> None:
    class Quitter:
        name = "quitter"

        def __init__(self) -> None:
            self.runs = 0
            self.second = asyncio.Event()

        async def run(self, stopping: asyncio.Event) -> None:
            self.runs += 1
            if self.runs >= 2:
                self.second.set()
                await stopping.wait()

        def health(self) -> dict[str, Any]:
            return {}

    quitter = Quitter()
    runner = Runner([quitter], backoff_base=0.01)
    task = await start(runner)
    await asyncio.wait_for(quitter.second.wait(), timeout=TIMEOUT)
    assert len(events("runner.component_crashed")) == 1
    assert runner.states["quitter"].last_error == (
        "RuntimeError: component returned without being asked to stop"
    )
    assert await stop(runner, task) == 0


@pytest.mark.parametrize(
    ("cap", "expected"),
    [
        (60.0, [0.01, 0.02, 0.04, 0.08]),
        (0.03, [0.01, 0.02, 0.03, 0.03]),
    ],
)
async def test_backoff_grows_between_consecutive_crashes(
    events: Events, cap: float, expected: list[float]
) -> None:
    flaky = Scripted("flaky", crashes=4)
    runner = Runner([flaky], backoff_base=0.01, backoff_cap=cap)
    task = await start(runner)
    await asyncio.wait_for(flaky.steady.wait(), timeout=TIMEOUT)
    backoffs = events("runner.backoff")
    assert [r.delay for r in backoffs] == pytest.approx(expected)  # type: ignore[attr-defined]
    assert {r.component for r in backoffs} == {"flaky"}  # type: ignore[attr-defined]
    assert await stop(runner, task) == 0


async def test_backoff_resets_after_a_healthy_run(events: Events) -> None:
    flaky = Scripted("flaky", crashes=3)
    # every run counts as healthy (ran longer than -1 s), so each crash is attempt 1 again
    runner = Runner([flaky], backoff_base=0.01, healthy_after=-1.0)
    task = await start(runner)
    await asyncio.wait_for(flaky.steady.wait(), timeout=TIMEOUT)
    delays = [r.delay for r in events("runner.backoff")]  # type: ignore[attr-defined]
    assert delays == pytest.approx([0.01, 0.01, 0.01])
    assert await stop(runner, task) == 0


async def test_stop_interrupts_a_long_backoff(events: Events) -> None:
    flaky = Scripted("flaky", crashes=1)
    runner = Runner([flaky], backoff_base=3600.0, backoff_cap=3600.0)
    task = await start(runner)
    for _ in range(5):
        await asyncio.sleep(0)
    assert runner.states["flaky"].state == "backoff"
    assert await stop(runner, task) == 0
    assert flaky.runs == 1  # not restarted once stopping
    assert runner.states["flaky"].state == "stopped"


async def test_restarts_counts_only_real_restarts(events: Events) -> None:
    flaky = Scripted("flaky", crashes=1)
    runner = Runner([flaky], backoff_base=3600.0, backoff_cap=3600.0)
    task = await start(runner)
    for _ in range(5):
        await asyncio.sleep(0)
    assert runner.states["flaky"].state == "backoff"
    assert await stop(runner, task) == 0
    assert flaky.runs == 1
    assert runner.states["flaky"].restarts == flaky.runs - 1


async def test_crash_during_shutdown_announces_no_restart(events: Events) -> None:
    started = asyncio.Event()

    class FailsOnStop:
        name = "fails_on_stop"

        async def run(self, stopping: asyncio.Event) -> None:
            started.set()
            await stopping.wait()
            raise RuntimeError("flush failed")

        def health(self) -> dict[str, Any]:
            return {}

    runner = Runner([FailsOnStop()])
    task = await start(runner)
    await asyncio.wait_for(started.wait(), timeout=TIMEOUT)
    assert await stop(runner, task) == 0
    assert len(events("runner.component_crashed")) == 1  # the crash itself is logged
    assert runner.states["fails_on_stop"].last_error == "RuntimeError: flush failed"
    assert events("runner.backoff") == []
    assert runner.states["fails_on_stop"].restarts == 0


async def test_runner_without_components_stops_cleanly(events: Events) -> None:
    runner = Runner([])
    task = await start(runner)
    assert await stop(runner, task) == 0
    assert runner.snapshot() == {"stopping": True, "components": {}}


async def test_stop_is_idempotent(events: Events) -> None:
    runner = Runner([Scripted("a")])
    runner.stop()
    assert runner.stopping.is_set()
    assert runner.forced is False
    assert len(events("runner.stopping")) == 1
    runner.stop()  # the second call forces ...
    runner.stop()  # ... and further calls change nothing
    runner.stop(force=True)
    assert runner.forced is True
    assert len(events("runner.stopping")) == 1
    assert len(events("runner.forced")) == 1


async def test_stop_before_run_returns_without_running_components(events: Events) -> None:
    component = Scripted("a")
    runner = Runner([component])
    runner.stop()
    assert await asyncio.wait_for(runner.run(), timeout=TIMEOUT) == 0
    assert component.runs == 0
    assert runner.states["a"].state == "stopped"


async def test_graceful_stop_lets_in_flight_work_finish(events: Events) -> None:
    working, release = asyncio.Event(), asyncio.Event()
    finished: list[str] = []

    class Worker:
        name = "worker"

        async def run(self, stopping: asyncio.Event) -> None:
            while not stopping.is_set():
                working.set()
                await release.wait()  # in-flight work, not interruptible by stopping
                finished.append("job")

        def health(self) -> dict[str, Any]:
            return {}

    runner = Runner([Worker()], grace=TIMEOUT)
    task = await start(runner)
    await asyncio.wait_for(working.wait(), timeout=TIMEOUT)
    runner.stop()
    for _ in range(5):
        await asyncio.sleep(0)
    assert not task.done()  # waiting for the in-flight job, not cancelling it
    asyncio.get_running_loop().call_soon(release.set)
    assert await asyncio.wait_for(task, timeout=TIMEOUT) == 0
    assert finished == ["job"]
    assert runner.states["worker"].state == "stopped"
    assert not events("runner.cancelling")
    assert not events("runner.forced")
    [stopped] = events("runner.stopped")
    assert stopped.forced is False  # type: ignore[attr-defined]


async def test_component_ignoring_stop_is_cancelled_after_grace(events: Events) -> None:
    stubborn = Stubborn()
    polite = Scripted("polite")
    runner = Runner([stubborn, polite], grace=0.05)
    task = await start(runner)
    await asyncio.wait_for(stubborn.started.wait(), timeout=TIMEOUT)
    loop = asyncio.get_running_loop()
    asked = loop.time()
    code = await stop(runner, task)
    assert loop.time() - asked >= 0.049  # it was given the whole grace (timer granularity)
    assert stubborn.cancelled
    assert stubborn.cleaned_up
    assert [r.component for r in events("runner.cancelling")] == ["stubborn"]  # type: ignore[attr-defined]
    assert runner.states["polite"].state == "stopped"
    assert code == 0  # the exit code is 1 only for a forced stop
    assert runner.forced is False


@pytest.mark.parametrize("second_call", [True, False])
async def test_forced_stop_cancels_at_once_and_exits_1(events: Events, second_call: bool) -> None:
    stubborn = Stubborn()
    runner = Runner([stubborn], grace=3600.0)
    task = await start(runner)
    await asyncio.wait_for(stubborn.started.wait(), timeout=TIMEOUT)
    if second_call:
        runner.stop()
        for _ in range(5):
            await asyncio.sleep(0)
        assert not task.done()  # still inside the (hour-long) grace
        runner.stop()
    else:
        runner.stop(force=True)
    assert await asyncio.wait_for(task, timeout=TIMEOUT) == 1
    assert runner.forced is True
    assert stubborn.cancelled
    assert stubborn.cleaned_up
    assert len(events("runner.forced")) == 1
    [stopped] = events("runner.stopped")
    assert stopped.forced is True  # type: ignore[attr-defined]


async def test_snapshot_shows_states_and_merges_health(events: Events) -> None:
    flaky = Scripted("flaky", crashes=1, health={"queue": 3, "connected": True})
    idle = Scripted("idle")
    runner = Runner([flaky, idle], backoff_base=0.01)

    before = runner.snapshot()
    assert before["stopping"] is False
    assert before["components"]["idle"]["state"] == "starting"
    assert before["components"]["idle"]["restarts"] == 0

    task = await start(runner)
    await asyncio.wait_for(asyncio.gather(flaky.steady.wait(), idle.steady.wait()), TIMEOUT)
    snap = runner.snapshot()
    assert snap["stopping"] is False
    assert set(snap["components"]) == {"flaky", "idle"}
    entry = snap["components"]["flaky"]
    assert entry["state"] == "running"
    assert entry["restarts"] == 1
    assert entry["last_error"] == "RuntimeError: boom 1"
    assert entry["last_error_at"] is not None
    assert entry["running_since"] is not None
    assert entry["queue"] == 3
    assert entry["connected"] is True
    assert "name" not in entry
    assert snap["components"]["idle"]["last_error"] is None

    assert await stop(runner, task) == 0
    after = runner.snapshot()
    assert after["stopping"] is True
    assert {c["state"] for c in after["components"].values()} == {"stopped"}


async def test_snapshot_survives_a_failing_health() -> None:
    class Broken(Scripted):
        def health(self) -> dict[str, Any]:
            raise RuntimeError("health is broken")

    class NoHealth:
        name = "nohealth"

        async def run(self, stopping: asyncio.Event) -> None:
            await stopping.wait()

    runner = Runner([Broken("broken"), NoHealth(), Scripted("fine", health={"ok": 1})])  # type: ignore[list-item]
    snap = runner.snapshot()
    assert snap["components"]["broken"]["state"] == "starting"
    assert snap["components"]["nohealth"]["state"] == "starting"
    assert snap["components"]["fine"]["ok"] == 1


def test_duplicate_component_names_are_refused() -> None:
    with pytest.raises(ValueError, match="unique"):
        Runner([Scripted("a"), Scripted("b"), Scripted("a")])
