"""The outbox component: woken by NOTIFY, it claims due deliveries, sends them, records results.

No polling. A NOTIFY on ``notifications_outbox`` (payload "<id> <epoch>", sent by a trigger
whenever a row becomes pending) is a hint: if its time has come, drain the table, otherwise
remember the time. Future times (retries, send-after, leases of rows a dead worker left in
``sending``) are one entry on a timer heap: the earliest known. Each claim that finds fewer
rows than it asked for also returns the earliest future time in the table, and the worker
sleeps until then or the next NOTIFY. On every (re)connect of the listener it drains, so
nothing committed while it was away waits.

The wake flag is cleared BEFORE the claim query is sent, never after: a row committed while
the query runs then still wakes the loop once more (procrastinate lost ~1.5 % of wake-ups to
that race). While sends are finishing, claims run ahead of the send slots: up to ``batch``
claimed rows wait in a local queue and start the moment a slot frees, so a burst keeps every
slot busy and claims full batches (claiming only free slots made claims alternate 49 rows
and 1). Results are written by
``results.ResultWriter`` on a second connection, so claims never queue behind result writes.

Both connections commit asynchronously (``synchronous_commit=off``, setting
``OUTBOX_SYNCHRONOUS_COMMIT``): a PostgreSQL crash may forget the last fraction of a second of
claims and results, which only means those rows are sent again, and delivery is at-least-once
anyway. A lost connection (a PostgreSQL restart) is reopened inside the component after a
jittered backoff; in-flight sends go on and their results wait in memory for the new writer.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import psycopg

from notifications import outbox_sql
from notifications.outbox_sql import ClaimedDelivery
from notifications.results import ResultWriter
from notifications.sending import ProviderConfigs, handed_back, released, send_one
from services import db
from services.backoff import exponential
from services.clock import Clock
from services.timers import TimerHeap

logger = logging.getLogger(__name__)

CHANNEL = "notifications_outbox"
APPLICATION_NAME = "alarm-worker-outbox"
# Errors of the connection rather than of our SQL: reconnect. Anything else is a bug and
# goes to the runner (which logs it and restarts the component).
CONNECTION_ERRORS = (psycopg.OperationalError, psycopg.InterfaceError)


@dataclass(frozen=True)
class OutboxSettings:
    concurrency: int = 50
    batch: int = 50
    lease: float = 60.0
    http_timeout: float = 15.0
    allow_loopback: bool = False
    block_private: bool = False
    synchronous_commit: bool = False
    reconnect_base: float = 0.5
    reconnect_cap: float = 30.0


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
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.clock = clock
        self.worker_id = worker_id
        self.settings = settings
        self._subscribe = subscribe
        self._conninfo = conninfo
        self._make_session = make_session or _guarded_session
        self._rng = rng
        self._wake = asyncio.Event()
        self._stopped = asyncio.Event()
        self._drain_wanted = True
        self._timers: TimerHeap[str] = TimerHeap()
        self._timers_changed = asyncio.Event()
        self._heard: datetime | None = None  # future times NOTIFYed since the last claim began
        self._queue: deque[ClaimedDelivery] = deque()  # claimed, waiting for a send slot
        self._sends: set[asyncio.Task[None]] = set()
        self._accepting = False  # queued rows may start sending
        self._finished_since_claim = 0
        self._session: aiohttp.ClientSession | None = None
        self._configs = ProviderConfigs()
        self._results = ResultWriter(clock, worker_id)  # kept across runs: unwritten results
        self._claims: psycopg.AsyncConnection[Any] | None = None
        self._writes: psycopg.AsyncConnection[Any] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._connection = "closed"
        self._failures = 0
        self._reconnects = 0
        self._last_error: str | None = None
        self.sent = 0
        self.drains = 0
        self.claims = 0

    # --- lifecycle ---------------------------------------------------------------------------

    async def run(self, stopping: asyncio.Event) -> None:
        self._wake, self._stopped = asyncio.Event(), asyncio.Event()
        self._drain_wanted = True
        self._session = session = self._make_session(self.settings)
        unsubscribe = self._subscribe(CHANNEL, self._on_notify, on_connect=self._on_connect)
        relay = asyncio.create_task(self._relay(stopping), name="outbox-stop")
        try:
            await self._serve(stopping)
            self._release_queued()  # unsent rows go back at once, for any worker to take
            await self._finish_sends()
        finally:
            unsubscribe()
            relay.cancel()
            await self._shut_down()
            await session.close()

    async def _serve(self, stopping: asyncio.Event) -> None:
        """Claim and send until ``stopping``; reopen lost connections after a backoff."""
        while not stopping.is_set():
            try:
                await self._connect()
                await self._loop(stopping)
            except CONNECTION_ERRORS as exc:
                await self._disconnected(exc)

    async def _loop(self, stopping: asyncio.Event) -> None:
        assert self._claims is not None
        self._accepting = True
        while not stopping.is_set():
            self._wake.clear()  # before the claim query: a NOTIFY during it wakes us again
            self._check_writer()
            if self._timers.pop_due(self.clock.now()):
                self._drain_wanted = True
            self._start_queued()
            if self._drain_wanted and self._may_claim():
                self._drain_wanted = False
                await self._claim(self._claims)
                continue
            # Nothing due, or enough claimed: a finishing send or a NOTIFY sets the wake event.
            await self.clock.sleep_until(self._timers.next_deadline(), self._wake)

    async def _relay(self, stopping: asyncio.Event) -> None:
        await stopping.wait()
        self._stopped.set()
        self._wake.set()

    # --- connections -------------------------------------------------------------------------

    async def _connect(self) -> None:
        if self._connection == "open":
            return
        self._connection = "connecting"
        self._claims = await self._open()
        self._writes = await self._open()
        self._writer = asyncio.create_task(self._results.run(self._writes), name="outbox-writer")
        self._writer.add_done_callback(lambda _: self._wake.set())  # a failed writer: reconnect
        self._connection = "open"
        self._drain_wanted = True  # rows committed while we were away are found by a claim
        if self._reconnects or self._failures:
            logger.info(
                "outbox connected again",
                extra={"event": "outbox.reconnected", "reconnects": self._reconnects},
            )

    async def _open(self) -> psycopg.AsyncConnection[Any]:
        conn = await psycopg.AsyncConnection.connect(self._conninfo(), autocommit=True)
        try:
            await conn.execute(
                db.session_settings(synchronous_commit=self.settings.synchronous_commit)
            )
        except BaseException:
            await conn.close()
            raise
        conn.prepare_threshold = 0  # prepared (so planned) on first use
        return conn

    def _check_writer(self) -> None:
        if self._writer is not None and self._writer.done():
            self._writer.result()  # raises what stopped it
            raise psycopg.InterfaceError("the result writer stopped")

    async def _disconnected(self, exc: BaseException) -> None:
        self._failures += 1
        self._reconnects += self._connection == "open"
        self._last_error = f"{type(exc).__name__}: {exc}"
        logger.warning(
            "outbox connection lost" if self._connection == "open" else "outbox connect failed",
            extra={"event": "outbox.disconnected", "error": self._last_error},
        )
        await self._close_connections()
        self._connection = "backoff"
        # Full jitter: workers cut off by one database restart spread their reconnects.
        delay = self._rng() * exponential(
            self._failures, base=self.settings.reconnect_base, cap=self.settings.reconnect_cap
        )
        await self.clock.sleep_until(self.clock.now() + timedelta(seconds=delay), self._stopped)

    async def _close_connections(self) -> None:
        if self._writer is not None:
            self._results.close()  # on a healthy connection it writes what is pending first
            await asyncio.gather(self._writer, return_exceptions=True)
            self._writer = None
        for conn in (self._claims, self._writes):
            if conn is not None:
                await conn.close()
        self._claims = self._writes = None
        self._connection = "closed"

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
            self._heard = due if self._heard is None else min(self._heard, due)
        self._wake.set()

    def _remember(self, due: datetime) -> None:
        current = self._timers.due_of("next")
        if current is None or due < current:
            self._timers.schedule("next", due)
            self._timers_changed.set()

    # --- claiming ----------------------------------------------------------------------------

    def _held(self) -> int:
        return len(self._queue) + len(self._sends)

    def _may_claim(self) -> bool:
        """Claim when a send slot is free, or ahead of the slots while sends are finishing.

        Ahead: once the local queue is down to half a batch, so a burst keeps every slot busy.
        Never ahead while no send has finished since the last claim: behind slots stuck on a
        slow provider, claimed rows would wait that another worker could send at once.
        """
        if len(self._sends) < self.settings.concurrency:
            return True
        refill_level = self.settings.concurrency + self.settings.batch // 2
        return self._finished_since_claim > 0 and self._held() <= refill_level

    async def _claim(self, conn: psycopg.AsyncConnection[Any]) -> None:
        # At most a batch, and never more held than every slot busy plus a batch queued.
        capacity = self.settings.concurrency + self.settings.batch
        limit = min(self.settings.batch, capacity - self._held())
        now = self.clock.now()
        self._heard = None
        self._finished_since_claim = 0
        claimed, upcoming = await outbox_sql.claim(
            conn,
            worker=self.worker_id,
            now=now,
            lease_until=now + timedelta(seconds=self.settings.lease),
            limit=limit,
        )
        self._failures = 0
        self.claims += 1
        self._queue.extend(claimed)
        self._start_queued()
        if len(claimed) == limit:
            self._drain_wanted = True  # more may be due: claim again when there is room
            return
        self.drains += 1  # nothing else is due now; sleep until the earliest future time
        self._timers_changed.set()
        heard, self._heard = self._heard, None
        self._timers.cancel("next")
        for due in (upcoming, heard):
            if due is not None:
                self._remember(due)

    def _start_queued(self) -> None:
        while self._accepting and self._queue and len(self._sends) < self.settings.concurrency:
            self._start_send(self._queue.popleft())

    def _release_queued(self) -> None:
        self._accepting = False
        while self._queue:
            self._results.add(released(self._queue.popleft()))

    # --- sending -----------------------------------------------------------------------------

    def _start_send(self, delivery: ClaimedDelivery) -> None:
        task = asyncio.create_task(self._send(delivery), name=f"outbox-send-{delivery.id}")
        self._sends.add(task)
        task.add_done_callback(self._send_done)

    def _send_done(self, task: asyncio.Task[None]) -> None:
        self._sends.discard(task)
        self._finished_since_claim += 1
        self._start_queued()  # at once, even while a claim is in flight
        self._wake.set()  # a send slot is free again

    async def _send(self, delivery: ClaimedDelivery) -> None:
        started = time.perf_counter()
        try:
            result = await send_one(self._session, delivery, self.clock.now(), self._configs)
        except asyncio.CancelledError:
            # Shutdown past the grace: hand the row back, due now, for any worker to resend.
            self._results.add(handed_back(delivery, self.clock.now()))
            raise
        result = replace(result, duration_ms=(time.perf_counter() - started) * 1000)
        self.sent += result.status == "sent"
        self._results.add(result)

    async def _finish_sends(self) -> None:
        """Stage 1 of shutdown: let in-flight sends finish (the runner bounds the wait)."""
        # Wait on the tasks not yet done: a done task leaves the set only when its callback
        # runs, and gathering done tasks alone would not yield to let it run (a busy loop).
        while pending := {task for task in self._sends if not task.done()}:
            await asyncio.wait(pending)

    async def _shut_down(self) -> None:
        self._release_queued()
        for task in list(self._sends):
            task.cancel()  # each hands its row back as a result
        await self._finish_sends()
        # The writer finishes what it is writing and writes what is left (never cut mid-write:
        # its results would be recorded but not logged or counted); then one last attempt.
        await self._close_connections()
        if self._results.pending:
            await self._final_write()

    async def _final_write(self) -> None:
        try:
            async with await self._open() as conn:
                await asyncio.shield(self._results.flush(conn))
        except psycopg.Error:
            logger.warning(
                "could not record results; kept for the next run",
                exc_info=True,
                extra={"event": "outbox.record_failed", "pending": len(self._results.pending)},
            )

    # --- for tests and /healthz --------------------------------------------------------------

    @property
    def written(self) -> int:
        return self._results.written

    async def wait_written(self, count: int) -> None:
        """Return once ``count`` results have been recorded in the table."""
        await self._results.wait_written(count)

    async def wait_idle(self) -> None:
        """Return once nothing is queued or in flight and every result is recorded."""
        while self._queue or self._sends:
            await self._finish_sends()
            await asyncio.sleep(0)  # queued rows start from the send callbacks
        await self._results.wait_empty()

    async def wait_drained(self) -> None:
        """Return once a claim has found nothing more due (the first drain, say)."""
        while not self.drains:
            self._timers_changed.clear()
            await self._timers_changed.wait()

    async def wait_next_due(self, due: datetime) -> None:
        """Return once the earliest future time known to the worker is ``due``."""
        while self._timers.next_deadline() != due:
            self._timers_changed.clear()
            await self._timers_changed.wait()

    def health(self) -> dict[str, Any]:
        deadline = self._timers.next_deadline()
        return {
            "connection": self._connection,
            "reconnects": self._reconnects,
            "last_error": self._last_error,
            "queued": len(self._queue),
            "sends_in_flight": len(self._sends),
            "results_pending": len(self._results.pending),
            "next_due_at": deadline.isoformat() if deadline else None,
            "sent": self.sent,
            "claims": self.claims,
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
