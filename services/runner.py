"""The Runner: owns the worker's named components, supervises them, and shuts them down in stages.

A component is anything with a ``name`` and ``async def run(stopping)`` that returns once
``stopping`` is set and its in-flight work is done. A component that raises is logged with its
traceback and restarted after an exponential backoff (1 s doubling to 60 s) while the others
keep running; the backoff resets once it has run cleanly for a minute.

Shutdown (``stop()``, idempotent): stage 1 sets ``stopping`` so components take no new work and
finish what runs, bounded by ``grace`` seconds; stage 2 cancels whatever is left and gives the
shielded final writes ``final_grace`` seconds. ``stop(force=True)`` (a second signal) skips the
grace and cancels at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from services.backoff import exponential

logger = logging.getLogger(__name__)


class Component(Protocol):
    name: str

    async def run(self, stopping: asyncio.Event) -> None: ...

    def health(self) -> dict[str, Any]: ...


@dataclass
class ComponentState:
    name: str
    state: str = "starting"  # starting | running | backoff | stopped
    restarts: int = 0
    last_error: str | None = None
    last_error_at: str | None = None
    running_since: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if k != "name"}


@dataclass
class Runner:
    components: list[Component]
    grace: float = 30.0
    final_grace: float = 5.0
    backoff_base: float = 1.0
    backoff_cap: float = 60.0
    healthy_after: float = 60.0
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    states: dict[str, ComponentState] = field(init=False)
    forced: bool = field(default=False, init=False)
    _force: asyncio.Event = field(default_factory=asyncio.Event, init=False)

    def __post_init__(self) -> None:
        names = [c.name for c in self.components]
        if len(set(names)) != len(names):
            raise ValueError(f"component names must be unique: {names}")
        self.states = {c.name: ComponentState(c.name) for c in self.components}

    def stop(self, *, force: bool = False) -> None:
        """Ask for shutdown. Idempotent; a second call (or ``force``) skips the grace."""
        if (force or self.stopping.is_set()) and not self._force.is_set():
            logger.warning("forced shutdown", extra={"event": "runner.forced"})
            self.forced = True
            self._force.set()
        if not self.stopping.is_set():
            logger.info("shutting down", extra={"event": "runner.stopping", "grace": self.grace})
            self.stopping.set()

    async def run(self) -> int:
        """Run until stopped; returns the process exit code (0 clean, 1 forced)."""
        logger.info(
            "worker started",
            extra={"event": "runner.started", "components": [c.name for c in self.components]},
        )
        tasks = {asyncio.create_task(self._supervise(c), name=c.name) for c in self.components}
        try:
            await self.stopping.wait()
            await self._finish_within_grace(tasks)
        finally:
            await self._cancel(tasks)
        logger.info("worker stopped", extra={"event": "runner.stopped", "forced": self.forced})
        return 1 if self.forced else 0

    def snapshot(self) -> dict[str, Any]:
        components = {}
        for component in self.components:
            entry = self.states[component.name].as_dict()
            with contextlib.suppress(Exception):  # health() must never break /healthz
                entry.update(component.health())
            components[component.name] = entry
        return {"stopping": self.stopping.is_set(), "components": components}

    async def _supervise(self, component: Component) -> None:
        state = self.states[component.name]
        attempt = 0
        while not self.stopping.is_set():
            started = time.monotonic()
            state.state, state.running_since = "running", _iso_now()
            try:
                await component.run(self.stopping)
                if self.stopping.is_set():
                    break
                raise RuntimeError("component returned without being asked to stop")
            except Exception as exc:
                self._record_crash(state, exc)
            if self.stopping.is_set():
                break  # crashed while shutting down: nothing to restart
            attempt = 1 if time.monotonic() - started > self.healthy_after else attempt + 1
            delay = exponential(attempt, base=self.backoff_base, cap=self.backoff_cap)
            state.state = "backoff"
            logger.info(
                "component restarts after backoff",
                extra={"event": "runner.backoff", "component": component.name, "delay": delay},
            )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self.stopping.wait()
            if not self.stopping.is_set():
                state.restarts += 1
        state.state = "stopped"

    def _record_crash(self, state: ComponentState, exc: BaseException) -> None:
        state.last_error = f"{type(exc).__name__}: {exc}"
        state.last_error_at = _iso_now()
        logger.error(
            "component crashed",
            exc_info=exc,
            extra={"event": "runner.component_crashed", "component": state.name},
        )

    async def _finish_within_grace(self, tasks: set[asyncio.Task[None]]) -> None:
        """Stage 1: wait for every component to finish, at most ``grace``, less if forced."""
        all_done = asyncio.create_task(asyncio.wait(tasks))
        forced = asyncio.create_task(self._force.wait())
        try:
            first = asyncio.FIRST_COMPLETED
            await asyncio.wait({all_done, forced}, timeout=self.grace, return_when=first)
        finally:
            all_done.cancel()  # cancels only the wait, never the components
            forced.cancel()

    async def _cancel(self, tasks: set[asyncio.Task[None]]) -> None:
        pending = {t for t in tasks if not t.done()}
        for task in pending:
            logger.warning(
                "cancelling component after grace",
                extra={"event": "runner.cancelling", "component": task.get_name()},
            )
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=self.final_grace)


def _iso_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
