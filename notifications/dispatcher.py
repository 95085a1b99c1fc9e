"""The outbox component: woken by NOTIFY, it claims due deliveries, sends them, records results.

No polling. A NOTIFY on ``notifications_outbox`` (payload "<id> <epoch>", sent by a trigger
whenever a row becomes pending) is a hint: if its time has come, drain the table, otherwise
remember the time. Future times (retries, send-after, leases of rows a dead worker left in
``sending``) are one entry on a timer heap: the earliest known. After every drain the worker
reads the earliest future time back from the table and sleeps until then or the next NOTIFY.
On every (re)connect of the listener it drains, so nothing committed while it was away waits.

The wake flag is cleared BEFORE the claim query is sent, never after: a row committed while
the query runs then still wakes the loop once more (procrastinate lost ~1.5 % of wake-ups to
that race). Sends run concurrently (bounded) over one aiohttp session; results are written
back in batches by one writer, and that write is shielded from cancellation.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import psycopg

from notifications import outbox_sql
from notifications.outbox_sql import ClaimedDelivery, Result
from notifications.sending import handed_back, log_result, send_one
from services import db
from services.clock import Clock
from services.timers import TimerHeap

logger = logging.getLogger(__name__)

CHANNEL = "notifications_outbox"
APPLICATION_NAME = "alarm-worker-outbox"


@dataclass(frozen=True)
class OutboxSettings:
    concurrency: int = 50
    batch: int = 50
    lease: float = 60.0
    http_timeout: float = 15.0
    allow_loopback: bool = False
    block_private: bool = False


class OutboxComponent:
    name = "outbox"

    def __init__(
        self,
        clock: Clock,
        worker_id: str,
        subscribe: Callable[..., Callable[[], None]],
        settings: OutboxSettings,
        *,
        conninfo: Callable[[], str] = lambda: db.conninfo(APPLICATION_NAME),
        make_session: Callable[[OutboxSettings], aiohttp.ClientSession] | None = None,
    ) -> None:
        self.clock = clock
        self.worker_id = worker_id
        self.settings = settings
        self._subscribe = subscribe
        self._conninfo = conninfo
        self._make_session = make_session or _guarded_session
        self._wake = asyncio.Event()
        self._drain_wanted = True
        self._timers: TimerHeap[str] = TimerHeap()
        self._sends: set[asyncio.Task[None]] = set()
        self._results: list[Result] = []  # kept across restarts: written by the next run
        self._results_ready = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None
        self.sent = 0
        self.drains = 0
        self.written = 0  # results recorded in the table; tests wait on it
        self._written_changed = asyncio.Event()
        self._timers_changed = asyncio.Event()
        self._closing = False

    # --- lifecycle ---------------------------------------------------------------------------

    async def run(self, stopping: asyncio.Event) -> None:
        self._wake, self._results_ready = asyncio.Event(), asyncio.Event()
        self._drain_wanted = True
        self._closing = False
        if self._results:  # results a crashed run could not write: first thing to do
            self._results_ready.set()
        async with await psycopg.AsyncConnection.connect(self._conninfo(), autocommit=True) as conn:
            self._session = session = self._make_session(self.settings)
            unsubscribe = self._subscribe(CHANNEL, self._on_notify, on_connect=self._on_connect)
            writer = asyncio.create_task(self._write_results(conn), name="outbox-writer")
            writer.add_done_callback(lambda _: self._wake.set())  # a failed writer ends the run
            relay = asyncio.create_task(self._relay(stopping), name="outbox-stop")
            try:
                await self._loop(conn, stopping, writer)
                await self._finish_sends()
            finally:
                unsubscribe()
                relay.cancel()
                await self._stop_writer(writer, conn)
                await session.close()

    async def _loop(
        self,
        conn: psycopg.AsyncConnection[Any],
        stopping: asyncio.Event,
        writer: asyncio.Task[None],
    ) -> None:
        while not stopping.is_set():
            self._wake.clear()  # before the claim query: a NOTIFY during it wakes us again
            if writer.done():
                writer.result()  # raises what stopped the writer: the runner restarts us
            if self._timers.pop_due(self.clock.now()):
                self._drain_wanted = True
            if self._drain_wanted and len(self._sends) < self.settings.concurrency:
                self._drain_wanted = False
                await self._drain(conn, stopping)
                continue
            # Nothing due, or every send slot busy: a finishing send sets the wake event.
            await self.clock.sleep_until(self._timers.next_deadline(), self._wake)

    async def _relay(self, stopping: asyncio.Event) -> None:
        await stopping.wait()
        self._wake.set()

    # --- wake-ups ----------------------------------------------------------------------------

    def _on_connect(self) -> None:
        self._drain_wanted = True
        self._wake.set()

    def _on_notify(self, payload: str) -> None:
        due = _due_from_payload(payload)
        if due is None or due <= self.clock.now():
            self._drain_wanted = True
        else:
            self._remember(due)
        self._wake.set()

    def _remember(self, due: datetime) -> None:
        current = self._timers.due_of("next")
        if current is None or due < current:
            self._timers.schedule("next", due)
            self._timers_changed.set()

    # --- draining ----------------------------------------------------------------------------

    async def _drain(self, conn: psycopg.AsyncConnection[Any], stopping: asyncio.Event) -> None:
        """Claim and start sends until nothing is due or every send slot is busy."""
        self.drains += 1
        while not stopping.is_set():
            free = self.settings.concurrency - len(self._sends)
            if free <= 0:
                self._drain_wanted = True  # resumed when a send slot frees up
                return
            limit = min(free, self.settings.batch)
            now = self.clock.now()
            lease_until = now + timedelta(seconds=self.settings.lease)
            claimed = await outbox_sql.claim(
                conn, worker=self.worker_id, now=now, lease_until=lease_until, limit=limit
            )
            for delivery in claimed:
                self._start_send(delivery)
            if len(claimed) < limit:
                break
        self._timers.cancel("next")
        upcoming = await outbox_sql.next_due(conn)
        if upcoming is not None:
            self._remember(upcoming)

    def _start_send(self, delivery: ClaimedDelivery) -> None:
        task = asyncio.create_task(self._send(delivery), name=f"outbox-send-{delivery.id}")
        self._sends.add(task)
        task.add_done_callback(self._send_done)

    def _send_done(self, task: asyncio.Task[None]) -> None:
        self._sends.discard(task)
        self._wake.set()  # a send slot is free again

    async def _send(self, delivery: ClaimedDelivery) -> None:
        started = time.perf_counter()
        try:
            result = await send_one(self._session, delivery, self.clock.now())
        except asyncio.CancelledError:
            # Shutdown past the grace: hand the row back, due now, for any worker to resend.
            result = handed_back(delivery, self.clock.now())
            self._add_result(result)
            raise
        result = replace(result, duration_ms=(time.perf_counter() - started) * 1000)
        self.sent += result.status == "sent"
        self._add_result(result)

    # --- results -----------------------------------------------------------------------------

    def _add_result(self, result: Result) -> None:
        self._results.append(result)
        self._results_ready.set()

    async def _write_results(self, conn: psycopg.AsyncConnection[Any]) -> None:
        while True:
            await self._results_ready.wait()
            self._results_ready.clear()
            await self._flush(conn)
            if self._closing and not self._results:
                return

    async def _flush(self, conn: psycopg.AsyncConnection[Any]) -> None:
        if not self._results:
            return
        batch, self._results = self._results, []
        try:
            await asyncio.shield(
                outbox_sql.record(conn, batch, worker=self.worker_id, now=self.clock.now())
            )
        except asyncio.CancelledError:
            raise
        except Exception:
            self._results = batch + self._results  # written by the next attempt or run
            raise
        for result in batch:
            log_result(result)
        self.written += len(batch)
        self._written_changed.set()

    async def wait_idle(self) -> None:
        """Return once no send is in flight and every result is recorded."""
        await self._finish_sends()
        while self._results:
            self._written_changed.clear()
            await self._written_changed.wait()

    async def wait_next_due(self, due: datetime) -> None:
        """Return once the earliest future time known to the worker is ``due``."""
        while self._timers.next_deadline() != due:
            self._timers_changed.clear()
            await self._timers_changed.wait()

    async def wait_written(self, count: int) -> None:
        """Return once ``count`` results have been recorded in the table."""
        while self.written < count:
            self._written_changed.clear()
            await self._written_changed.wait()

    async def _finish_sends(self) -> None:
        """Stage 1 of shutdown: let in-flight sends finish (the runner bounds the wait)."""
        # Wait on the tasks not yet done: a done task leaves the set only when its callback
        # runs, and gathering done tasks alone would not yield to let it run (a busy loop).
        while pending := {task for task in self._sends if not task.done()}:
            await asyncio.wait(pending)

    async def _stop_writer(
        self, writer: asyncio.Task[None], conn: psycopg.AsyncConnection[Any]
    ) -> None:
        for task in list(self._sends):
            task.cancel()  # each hands its row back as a result
        await self._finish_sends()
        # Let the writer finish what it is writing and write what is left, never cut it
        # mid-write (its results would be recorded but not logged or counted).
        self._closing = True
        self._results_ready.set()
        await asyncio.gather(writer, return_exceptions=True)
        if conn.closed or conn.broken:
            return  # the results stay in memory for the next run (the runner restarts us)
        try:
            await asyncio.shield(self._flush(conn))  # the final write
        except psycopg.Error:
            logger.warning(
                "could not record results; kept for the next run",
                exc_info=True,
                extra={"event": "outbox.record_failed", "pending": len(self._results)},
            )

    def health(self) -> dict[str, Any]:
        deadline = self._timers.next_deadline()
        return {
            "sends_in_flight": len(self._sends),
            "results_pending": len(self._results),
            "next_due_at": deadline.isoformat() if deadline else None,
            "sent": self.sent,
            "drains": self.drains,
        }


def _due_from_payload(payload: str) -> datetime | None:
    """The due time in a trigger's payload "<id> <epoch>"; None (drain now) if unreadable."""
    try:
        return datetime.fromtimestamp(float(payload.split()[1]), UTC)
    except (IndexError, ValueError, OverflowError):
        return None


def _guarded_session(settings: OutboxSettings) -> aiohttp.ClientSession:
    from notifications.ssrf import make_session

    return make_session(
        allow_loopback=settings.allow_loopback,
        block_private=settings.block_private,
        limit=settings.concurrency,
        total_timeout=settings.http_timeout,
    )
