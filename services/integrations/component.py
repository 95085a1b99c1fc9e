"""The wrapper that runs one integration's client as a worker component.

A client type is a factory and a settings builder:

    ClientType("home_assistant", factory=HomeAssistantClient, build_settings=ha_settings)

``build_settings(config: EffectiveConfig)`` turns the integration's effective configuration
(``config.load``: the row, decrypted, over the environment defaults) into the client's frozen
settings dataclass, raising ``ValueError`` when it cannot; ``factory(settings, *, clock, report,
on_state)`` makes a client with ``async run(stopping)`` and ``health()``.

The component runs the client only while this worker leads (``leadership.Leadership``) and the
integration is configured and enabled. A NOTIFY on ``integrations_config`` naming its kind, or
a reconnect of the LISTEN connection, re-reads the row; the client is stopped and started again
only when the settings built from it differ from those it runs with. Losing the leadership
stops the client at once. A client that crashes takes the component with it, and the runner
restarts the component after its backoff.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from services.clock import Clock
from services.integrations.config import CHANNEL
from services.integrations.config_spec import EffectiveConfig
from services.integrations.leadership import Term

logger = logging.getLogger(__name__)


class LeadershipView(Protocol):
    """What the component needs of ``leadership.Leadership``."""

    @property
    def leading(self) -> bool: ...

    async def wait_term(self, stopping: asyncio.Event) -> Term | None: ...


class IntegrationClient(Protocol):
    async def run(self, stopping: asyncio.Event) -> None: ...

    def health(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class ClientType:
    kind: str
    factory: Callable[..., IntegrationClient]
    build_settings: Callable[[EffectiveConfig], Any]


@dataclass(frozen=True)
class Desired:
    """What should run, from one read of the configuration."""

    config: EffectiveConfig
    settings: Any = None  # None: nothing runs
    error: str | None = None

    @property
    def key(self) -> tuple[Any, ...]:
        """Equal keys mean "no restart" (a new row equal to the environment default, ...)."""
        c = self.config
        return (c.configured, c.enabled, self.error, self.settings)


class IntegrationComponent:
    def __init__(
        self,
        client_type: ClientType,
        *,
        leadership: LeadershipView,
        load: Callable[[str], Awaitable[EffectiveConfig]],
        subscribe: Callable[..., Callable[[], None]],
        clock: Clock,
        report: Callable[..., None],
        on_state: Callable[..., Awaitable[bool]],
        stop_timeout: float = 10.0,
    ) -> None:
        self.name = client_type.kind
        self.client_type = client_type
        self.leadership = leadership
        self._load = load
        self._subscribe = subscribe
        self.clock = clock
        self._report = report
        self._on_state = on_state
        self.stop_timeout = stop_timeout
        self.desired: Desired | None = None
        self._desired_changed = asyncio.Event()
        self._reloading: asyncio.Task[None] | None = None
        self._reload_again = False
        self._reported: tuple[Any, ...] | None = None
        self.client: IntegrationClient | None = None
        self.starts = 0
        self.reloads = 0

    # --- the component -----------------------------------------------------------------

    async def run(self, stopping: asyncio.Event) -> None:
        self._desired_changed = asyncio.Event()
        unsubscribe = self._subscribe(CHANNEL, self._on_notify, self._schedule_reload)
        try:
            await self._reload_once()
            while not stopping.is_set():
                term = await self.leadership.wait_term(stopping)
                if term is None:
                    break
                self._reported = None  # a new term reports the configuration again
                await self._lead(term, stopping)
        finally:
            unsubscribe()
            if self._reloading is not None:
                self._reloading.cancel()

    def health(self) -> dict[str, Any]:
        desired = self.desired
        config = desired.config if desired else None
        return {
            "leader": self.leadership.leading,
            "running": self.client is not None,
            "configured": config.configured if config else None,
            "enabled": config.enabled if config else None,
            "source": config.source if config else None,
            "config_error": desired.error if desired else None,
            "starts": self.starts,
            "client": self.client.health() if self.client is not None else None,
        }

    async def _lead(self, term: Term, stopping: asyncio.Event) -> None:
        while not stopping.is_set() and not term.ended.is_set():
            desired = self.desired
            assert desired is not None  # read before the first term
            self._desired_changed.clear()
            self._report_configuration(desired)
            if desired.settings is None:
                await _first(stopping.wait(), term.ended.wait(), self._desired_changed.wait())
            else:
                await self._run_client(desired, stopping, term)

    async def _run_client(self, desired: Desired, stopping: asyncio.Event, term: Term) -> None:
        client = self.client_type.factory(
            desired.settings, clock=self.clock, report=self._report, on_state=self._on_state
        )
        client_stopping = asyncio.Event()
        self.client, self.starts = client, self.starts + 1
        logger.info(
            "integration client starting",
            extra={"event": "integrations.client_started", "integration": self.name},
        )
        task = asyncio.create_task(client.run(client_stopping), name=f"{self.name}-client")
        try:
            await _first(task, stopping.wait(), term.ended.wait(), self._desired_changed.wait())
            if task.done():
                task.result()  # a crash: the runner restarts the component
                raise RuntimeError(f"{self.name} client returned without being asked to stop")
            why = (
                "stopping" if stopping.is_set()
                else "leadership lost" if term.ended.is_set()
                else "settings changed"
            )  # fmt: skip
            logger.info(
                "integration client stopping",
                extra={"event": "integrations.client_stopping", "integration": self.name,
                       "reason": why},
            )  # fmt: skip
            client_stopping.set()
            await self._finish(task)
        finally:
            if not task.done():
                task.cancel()
                await asyncio.wait({task})
            self.client = None

    async def _finish(self, task: asyncio.Task[None]) -> None:
        done, _ = await asyncio.wait({task}, timeout=self.stop_timeout)
        if not done:
            logger.warning(
                "integration client did not stop in time; cancelled",
                extra={"event": "integrations.client_cancelled", "integration": self.name},
            )
            task.cancel()
            await asyncio.wait({task})
        elif not task.cancelled() and task.exception() is not None:
            logger.error(
                "integration client failed while stopping",
                exc_info=task.exception(),
                extra={"event": "integrations.client_failed", "integration": self.name},
            )

    def _report_configuration(self, desired: Desired) -> None:
        if desired.key == self._reported:
            return
        self._reported = desired.key
        config = desired.config
        if not config.configured:
            self._report(self.name, "unconfigured")
            return
        self._report(self.name, "configured", details={"enabled": config.enabled})
        if desired.error is not None and config.enabled:
            self._report(self.name, "disconnected", error=f"invalid configuration: {desired.error}")

    # --- configuration -----------------------------------------------------------------

    def _on_notify(self, payload: str) -> None:
        if payload in (self.name, "*"):
            self._schedule_reload()

    def _schedule_reload(self) -> None:
        if self._reloading is not None and not self._reloading.done():
            self._reload_again = True  # a change committed while we read: read once more
            return
        self._reloading = asyncio.create_task(self._reload_loop(), name=f"{self.name}-reload")

    async def _reload_loop(self) -> None:
        while True:
            self._reload_again = False
            try:
                await self._reload_once()
            except Exception:
                # The database is away: the listener reconnects and calls us again then.
                logger.exception(
                    "cannot read the integration configuration",
                    extra={"event": "integrations.config_read_failed", "integration": self.name},
                )
                return
            if not self._reload_again:
                return

    async def _reload_once(self) -> None:
        config = await self._load(self.name)
        self.reloads += 1
        desired = self._desired_from(config)
        previous = self.desired
        self.desired = desired
        if previous is None or previous.key != desired.key:
            if previous is not None:
                logger.info(
                    "integration configuration changed",
                    extra={"event": "integrations.config_changed", "integration": self.name},
                )
            self._desired_changed.set()

    def _desired_from(self, config: EffectiveConfig) -> Desired:
        if config.error is not None:
            return Desired(config, error=config.error)
        if not config.active:
            return Desired(config)
        try:
            return Desired(config, settings=self.client_type.build_settings(config))
        except ValueError as exc:
            return Desired(config, error=str(exc))


async def _first(*awaitables: Awaitable[Any]) -> None:
    """Wait until one of ``awaitables`` finishes; the others are cancelled (tasks passed in
    are left running: only the wrappers made here are cancelled)."""
    futures = [asyncio.ensure_future(a) for a in awaitables]
    try:
        await asyncio.wait(futures, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for future, awaitable in zip(futures, awaitables, strict=True):
            if future is not awaitable:
                future.cancel()
