"""The worker's status hub: the ``"status"`` component that integrations report to.

``report(...)`` (its events: ``realtime.status``) runs on the event loop and only updates
memory: the pure transition (``realtime.status.apply``) says whether anything changed, and a
change marks the integration dirty and wakes the hub. The hub's loop writes each dirty
integration once (the newest status; one transaction via ``realtime.store.write``) and then
pushes the whole ``system_status`` through ``realtime.broadcast``. With nothing reported it
sleeps: no query, no push, no wake-up.

The offline rule: an integration configured and enabled that stays not online for
``offline_after`` (60) seconds records one ``integration_offline`` AlarmEvent, and one
``integration_recovered`` when it is online again. It is a timer on the injected clock, armed
at the first report that takes it offline and cancelled when it comes back, so a flap shorter
than a minute records nothing. Whether an outage was recorded is stored with the status, so a
worker restart in the middle of one neither records it twice nor forgets the recovery.

A failed write (the database is away) keeps the integration dirty and retries after a backoff
(1 s doubling to 30 s), logged at most once a minute; reports keep being applied meanwhile.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from realtime import broadcast, store
from realtime.status import (
    INTEGRATIONS,
    IntegrationStatus,
    ReportError,
    apply,
    check_report,
    initial,
    system_status_payload,
)
from realtime.store import OfflineEvent
from services.backoff import exponential
from services.clock import Clock
from services.ratelimit_log import RateLimitedLog
from services.timers import TimerHeap

if TYPE_CHECKING:
    from services.worker import WorkerContext

logger = logging.getLogger(__name__)

OFFLINE_AFTER = 60.0
SINGLETON_KEY = "realtime.status_hub"

DbCall = Callable[..., Awaitable[Any]]
Publish = Callable[..., Any]


def status_hub(ctx: WorkerContext) -> StatusHub:
    """The worker's one hub (integrations take its ``report``; RealtimeConfig runs it)."""
    return ctx.singleton(
        SINGLETON_KEY, lambda: StatusHub(ctx.clock, ctx.db.call, worker_id=ctx.worker_id)
    )


@dataclass
class _Dirty:
    visible: bool = False  # the payload changed: number it and push it
    events: list[OfflineEvent] = field(default_factory=list)


class StatusHub:
    name = "status"

    def __init__(
        self,
        clock: Clock,
        db_call: DbCall,
        *,
        worker_id: str = "",
        publish: Publish = broadcast.system_status,
        offline_after: float = OFFLINE_AFTER,
        retry_base: float = 1.0,
        retry_cap: float = 30.0,
        log_every: float = 60.0,
    ) -> None:
        self.clock, self._db, self.worker_id, self._publish = clock, db_call, worker_id, publish
        self.offline_after = offline_after
        self.retry_base, self.retry_cap, self.log_every = retry_base, retry_cap, log_every
        self.statuses: dict[str, IntegrationStatus] = {i: initial(i) for i in INTEGRATIONS}
        self._offline_reported: dict[str, bool] = dict.fromkeys(INTEGRATIONS, False)
        self._offline_since: dict[str, datetime] = {}
        self._timers: TimerHeap[str] = TimerHeap()
        self._dirty: dict[str, _Dirty] = {}
        self._reported: set[str] = set()
        self._wake = asyncio.Event()
        self._sleeping = False
        self._loop_moved = asyncio.Event()  # the loop fell asleep or woke up (settled())
        self._write_failures = 0
        self._retry_at = 0.0
        self._log = RateLimitedLog(logger, every=log_every, monotonic=clock.monotonic)
        self.loaded = False
        self.reports = self.changes = self.writes = self.pushes = self.rejected = 0
        self.last_error: str | None = None

    # --- the integrations' side --------------------------------------------------------------

    def report(
        self,
        integration: str,
        event: str,
        *,
        error: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        """Apply one connection event (on the event loop thread; never raises, never blocks)."""
        try:
            integration, event, error, details = check_report(integration, event, error, details)
        except ReportError as exc:
            self.rejected += 1
            self._log.record("realtime.report_rejected", "status report rejected", error=str(exc))
            return
        self.reports += 1
        self._reported.add(integration)
        old = self.statuses[integration]
        moved = apply(old, event, at=self.clock.now(), error=error, details=details)
        if not moved.changed:
            return
        self.changes += 1
        self.statuses[integration] = moved.status
        self._mark(integration, visible=True)
        self._track_offline(integration)
        logger.info(
            "integration status changed",
            extra={
                "event": "realtime.status_changed",
                "integration": integration,
                "from_state": old.state,
                "to_state": moved.status.state,
                "report": event,
            },
        )

    # --- the component -----------------------------------------------------------------------

    async def run(self, stopping: asyncio.Event) -> None:
        relay = asyncio.ensure_future(self._relay(stopping))
        try:
            if not self.loaded:
                self._restore(await self._db(store.load))
                self.loaded = True
            while not stopping.is_set():
                self._wake.clear()
                self._fire_due()
                if self._dirty and self.clock.monotonic() >= self._retry_at:
                    await self._write_dirty()
                    continue
                await self._sleep()
            if self._dirty:
                await self._write_dirty()  # one last try for what changed while stopping
        finally:
            relay.cancel()
            await broadcast.get_publisher().aflush(2.0)

    def health(self) -> dict[str, Any]:
        return {
            "integrations": {name: s.state for name, s in self.statuses.items()},
            "reports": self.reports,
            "changes": self.changes,
            "writes": self.writes,
            "pushes": self.pushes,
            "rejected": self.rejected,
            "pending_writes": len(self._dirty),
            "offline_timers": len(self._timers),
            "last_error": self.last_error,
            "publisher": broadcast.get_publisher().health(),  # every push of this process
        }

    async def settled(self) -> None:
        """Return once the loop sleeps with nothing due (tests and benchmarks wait on it)."""
        while not (self._sleeping and not self._due()):
            self._loop_moved.clear()
            await self._loop_moved.wait()

    def _due(self) -> bool:
        now = self.clock.monotonic()
        deadline = self._timers.next_deadline()
        if deadline is not None and deadline <= now:
            return True
        return bool(self._dirty) and now >= self._retry_at

    async def _sleep(self) -> None:
        self._sleeping = True
        self._loop_moved.set()
        try:
            await self.clock.sleep_until(self._next_wall_deadline(), self._wake)
        finally:
            self._sleeping = False
            self._loop_moved.set()

    async def _relay(self, stopping: asyncio.Event) -> None:
        await stopping.wait()
        self._wake.set()

    # --- the offline rule --------------------------------------------------------------------

    def _track_offline(self, integration: str) -> None:
        status = self.statuses[integration]
        if status.tracked and not status.online:
            if integration not in self._timers and not self._offline_reported[integration]:
                self._offline_since[integration] = self.clock.now()
                due = self.clock.monotonic() + self.offline_after
                self._timers.schedule(integration, due)
                self._wake.set()  # the loop must sleep until the new deadline
            return
        self._timers.cancel(integration)
        if self._offline_reported[integration]:
            self._offline_reported[integration] = False
            if status.online:
                self._mark(integration, event=self._recovered_event(integration))

    def _fire_due(self) -> None:
        for integration, _ in self._timers.pop_due(self.clock.monotonic()):
            status = self.statuses[integration]
            if not status.tracked or status.online or self._offline_reported[integration]:
                continue
            self._offline_reported[integration] = True
            since = self._offline_since.get(integration, self.clock.now())
            event = OfflineEvent(
                "integration_offline",
                f"{integration} offline for {self.offline_after:g} s"
                + (f": {status.last_error}" if status.last_error else ""),
                {
                    "integration": integration,
                    "offline_since": since.isoformat(),
                    "state": status.state,
                    "last_error": status.last_error,
                },
            )
            self._mark(integration, event=event)
            logger.warning(
                "integration offline",
                extra={"event": "realtime.integration_offline", "integration": integration},
            )

    def _recovered_event(self, integration: str) -> OfflineEvent:
        since = self._offline_since.pop(integration, None)
        seconds = (self.clock.now() - since).total_seconds() if since else None
        logger.info(
            "integration recovered",
            extra={"event": "realtime.integration_recovered", "integration": integration},
        )
        return OfflineEvent(
            "integration_recovered",
            f"{integration} back online",
            {
                "integration": integration,
                "offline_since": since.isoformat() if since else None,
                "offline_seconds": round(seconds, 3) if seconds is not None else None,
            },
        )

    def _restore(self, stored: dict[str, store.Stored]) -> None:
        """Take over what the table knows: history for those not yet reported, outage flags."""
        for integration, row in stored.items():
            if integration not in self._reported:
                # The connection itself belongs to whoever reports next: start from "idle".
                self.statuses[integration] = _history_only(row.status)
            self._offline_reported[integration] = row.offline_reported
            if row.offline_reported:
                self._timers.cancel(integration)
                if integration in self._reported:
                    self._track_offline(integration)
        self._wake.set()

    # --- writing -----------------------------------------------------------------------------

    def _mark(
        self, integration: str, *, visible: bool = False, event: OfflineEvent | None = None
    ) -> None:
        dirty = self._dirty.setdefault(integration, _Dirty())
        dirty.visible = dirty.visible or visible
        if event is not None:
            dirty.events.append(event)
        self._wake.set()
        self._loop_moved.set()

    async def _write_dirty(self) -> None:
        for integration in list(self._dirty):
            dirty = self._dirty.pop(integration)
            status = self.statuses[integration]
            try:
                written = await self._db(
                    store.write,
                    status,
                    offline_reported=self._offline_reported[integration],
                    worker_id=self.worker_id,
                    visible=dirty.visible,
                    events=dirty.events,
                )
            except Exception as exc:
                self._write_failed(integration, dirty, exc)
                return
            self.writes += 1
            if self._write_failures:
                logger.info("status writes resumed", extra={"event": "realtime.write_recovered"})
                self._write_failures = 0
            if dirty.visible:
                self.pushes += 1
                payload = system_status_payload(written.statuses)
                self._publish(payload, sequence=written.sequence, timestamp=self.clock.now())

    def _write_failed(self, integration: str, dirty: _Dirty, exc: BaseException) -> None:
        newer = self._dirty.pop(integration, _Dirty())
        dirty.visible = dirty.visible or newer.visible
        dirty.events.extend(newer.events)
        self._dirty = {integration: dirty, **self._dirty}
        self._write_failures += 1
        self.last_error = f"{type(exc).__name__}: {exc}"
        delay = exponential(self._write_failures, base=self.retry_base, cap=self.retry_cap)
        self._retry_at = self.clock.monotonic() + delay
        self._log.record(
            "realtime.write_failed",
            "cannot store integration status; retrying",
            error=self.last_error,
            retry_in=delay,
        )

    def _next_wall_deadline(self) -> datetime | None:
        """The next timer (or write retry) as wall time; kept in monotonic time internally."""
        candidates = [t for t in (self._timers.next_deadline(),) if t is not None]
        if self._dirty:
            candidates.append(self._retry_at)
        if not candidates:
            return None
        return self.clock.now() + timedelta(seconds=min(candidates) - self.clock.monotonic())


def _history_only(status: IntegrationStatus) -> IntegrationStatus:
    return dataclasses.replace(status, link="idle", available=None)
