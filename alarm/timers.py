"""The alarm's timer component: one heap for rule runtimes, pending actions and alarm delays.

It replaces three polling loops of the old panel. The tables are the truth (``alarm.timer_policy``
lists them and what happens when each kind comes due); the heap, keyed by ``(kind, id)``, is a
copy kept in step by NOTIFY: database triggers on the three tables send ``"<kind> <id>
<epoch|cancel>"`` on ``alarm_timers`` whenever a row is scheduled, moved or no longer
scheduled, whoever wrote it (web process, worker, SQL). After every (re)connect of the
listener the component re-reads all scheduled rows (NOTIFYs sent while it was away are gone);
notices arriving during that read are replayed after it, so none is lost. Rows that came due
while no worker ran are due at once (catch-up, with each kind's stale policy).

Between fires it sleeps until the earliest deadline: at idle no query, no log line. The wait
is monotonic and re-checked against the wall clock after waking (never early; a wall-clock
step does not move a timer: ``timer_policy.on_deadline``). Due timers are fired in batches,
never awaited by the loop, so a statement in flight does not delay the next deadline: pending
actions in one statement per batch (``alarm.timer_sql``) on one of the component's own
connections (``alarm.timer_lanes``, ``ALARM_TIMER_LANES``), the rest on its own ORM thread
(``alarm.timer_store``). Each row is claimed conditionally, so with several replicas (or
lanes) every timer fires exactly once.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import psycopg

from alarm import timer_policy, timer_sql, timer_store
from alarm.timer_lanes import FiringLanes
from alarm.timer_policy import ACTION, Key, Notice, PayloadError, Ready, Schedule
from alarm.wakeup import PreciseSleeper
from services import db
from services.clock import Clock
from services.dbthread import AsyncStore
from services.ratelimit_log import FieldNames, RateLimitedLog

logger = logging.getLogger(__name__)

APPLICATION_NAME = "alarm-worker-timers"
RETRY_DELAY = 5.0  # seconds before a timer whose fire failed (database away) is tried again
MAX_RETRIES = 5
BATCH = 500
LANES = 2  # connections firing pending actions at once (see alarm.timer_lanes)


class AlarmTimers:
    name = "alarm_timers"

    def __init__(
        self,
        clock: Clock,
        worker_id: str,
        subscribe: Callable[..., Callable[[], None]],
        *,
        conninfo: Callable[[], str] = lambda: db.conninfo(APPLICATION_NAME),
        orm: AsyncStore | None = None,
        batch: int = BATCH,
        lanes: int = LANES,
        sleeper: PreciseSleeper | None = None,
    ) -> None:
        self.clock = clock
        self.worker_id = worker_id
        self._subscribe = subscribe
        self._conninfo = conninfo
        self._orm = orm
        self.batch = batch
        self.lanes = self._new_lanes(lanes)
        self._sleeper = sleeper
        self._sleep_until = sleeper.sleep_until if sleeper else clock.sleep_until
        self.timers = Schedule()
        self._wake = asyncio.Event()
        self._reload_wanted = False
        self._replay: list[Notice] | None = None  # notices that arrived during a reload
        self._orm_tasks: set[asyncio.Task[None]] = set()
        self._retries: Counter[Key] = Counter()
        self.outcomes: Counter[str] = Counter()  # what fired timers did; tests wait on it
        self._progress = asyncio.Event()
        self.loads = 0
        self.sleeping = False  # waiting for a deadline or a notice (tests wait on it)
        # Anyone can NOTIFY the channel: a flood of garbage is one line a minute, counted.
        self._bad_notices = RateLimitedLog(
            logger, "alarm.timer_notice_malformed", "malformed timer notice ignored",
            monotonic=clock.monotonic, names=FieldNames(detail="error", total="count"),
        )  # fmt: skip

    # --- lifecycle ---------------------------------------------------------------------------

    async def run(self, stopping: asyncio.Event) -> None:
        self._wake = asyncio.Event()
        self.timers, self._replay = Schedule(), None
        given = self._orm
        orm = self._orm = given or AsyncStore()
        try:
            await self.lanes.open()
            unsubscribe = self._subscribe(
                timer_policy.CHANNEL, self._on_notify, on_connect=self._on_connect
            )
            relay = asyncio.create_task(self._relay(stopping), name="alarm-timers-stop")
            try:
                await self._loop(stopping)
            finally:
                unsubscribe()
                relay.cancel()
                await self.lanes.drain()
                await self._finish_orm()
        finally:
            await self.lanes.close()
            if given is None:
                await orm.close()
                self._orm = None
            if self._sleeper:
                self._sleeper.close()

    def _new_lanes(self, size: int) -> FiringLanes[Ready]:
        async def connect() -> psycopg.AsyncConnection[Any]:
            conn = await psycopg.AsyncConnection.connect(self._conninfo(), autocommit=True)
            try:
                # Planned once (re-planning the claim cost more than running it); commits
                # stay synchronous: a fired timer forgotten by a crash would fire twice.
                await conn.execute(db.session_settings())
                conn.prepare_threshold = 0  # prepared at first use, and used at once:
                await self._warm_up(conn)  # the first timers do not pay for planning
            except BaseException:
                await conn.close()
                raise
            return conn

        def wake() -> None:
            self._wake.set()  # the loop raises the lane's failure

        return FiringLanes(connect, self._fire_lane, size=size, batch=self.batch, on_failure=wake)

    async def _warm_up(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Plan and prepare the claim statement by running it on no rows."""
        await timer_sql.fire_actions(
            conn, [], now=self.clock.now(), worker=self.worker_id, stale_after=0.0
        )

    async def _relay(self, stopping: asyncio.Event) -> None:
        await stopping.wait()
        self._wake.set()

    async def _loop(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            self._wake.clear()  # before looking: a notice that arrives meanwhile wakes us again
            if self.lanes.failure is not None:
                raise self.lanes.failure  # a lane's connection is gone: the runner restarts us
            if self._reload_wanted:
                self._reload_wanted = False
                await self._reload()
                continue
            due = self._pop_due()
            if due:
                self._fire(due)
                continue
            self.sleeping = True
            self._progress.set()
            try:
                await self._sleep_until(self._next_wall_deadline(), self._wake)
            finally:
                self.sleeping = False

    # --- notices -----------------------------------------------------------------------------

    def _on_connect(self) -> None:
        self._reload_wanted = True
        self._wake.set()

    def _on_notify(self, payload: str) -> None:
        try:
            notice = timer_policy.parse(payload)
        except PayloadError as exc:
            self._bad_notices.record("bad_payload", str(exc))
            return
        if self._replay is not None:
            self._replay.append(notice)
        self._apply(notice)

    def _apply(self, notice: Notice) -> None:
        if notice.due is None:
            self.timers.cancel(notice.key)
        elif self._schedule(notice.key, notice.due):
            self._wake.set()  # earlier than what we sleep for
        self._progress.set()

    def _schedule(self, key: Key, due: datetime) -> bool:
        return self.timers.set(key, due, self.clock.now(), self.clock.monotonic())

    @property
    def malformed(self) -> int:
        """Notices ignored because they could not be parsed (tests and health read it)."""
        return self._bad_notices.total

    async def _reload(self) -> None:
        """Re-read every scheduled row; notices that arrive meanwhile are replayed after."""
        self._replay = []
        try:
            async with self.lanes.borrowed() as conn:
                rows = await timer_sql.load(conn)
        finally:
            replay, self._replay = self._replay, None
        self.timers = Schedule()
        for row in rows:
            self._schedule((row.kind, row.id), row.due)
        for notice in replay:
            self._apply(notice)
        self.loads += 1
        self._progress.set()
        logger.info(
            "alarm timers loaded",
            extra={
                "event": "alarm.timers_loaded",
                "timers": len(self.timers),
                "overdue": self.timers.overdue(self.clock.now()),
            },
        )

    # --- firing ------------------------------------------------------------------------------

    def _pop_due(self) -> list[Ready]:
        """Timers whose monotonic deadline passed and whose wall-clock time has come."""
        ready = self.timers.pop_ready(self.clock.now(), self.clock.monotonic())
        for item in ready:
            if item.clock_jumped:
                logger.warning(
                    "wall clock behind a timer's monotonic deadline: firing on elapsed time",
                    extra={"event": "alarm.clock_jumped", "kind": item.key[0], "id": item.key[1]},
                )
        return ready

    def _next_wall_deadline(self) -> datetime | None:
        deadline = self.timers.next_deadline()
        if deadline is None:
            return None
        return self.clock.now() + timedelta(seconds=deadline - self.clock.monotonic())

    def _fire(self, due: list[Ready]) -> None:
        """Start firing ``due``: pending actions on a lane, the rest on the ORM thread."""
        actions = [item for item in due if item.key[0] == ACTION]
        if actions:
            self.lanes.submit(actions)
        if others := [item for item in due if item.key[0] != ACTION]:
            self._start_orm(others)

    async def _fire_lane(self, conn: psycopg.AsyncConnection[Any], chunk: list[Ready]) -> None:
        verdicts = await self._fire_actions(conn, chunk)
        if for_orm := [item for item in chunk if verdicts.get(item.key[1]) == "orm"]:
            self._start_orm(for_orm)

    def _start_orm(self, items: list[Ready]) -> None:
        task = asyncio.create_task(self._fire_orm(items), name="alarm-timers-orm")
        self._orm_tasks.add(task)
        task.add_done_callback(self._orm_tasks.discard)

    async def _fire_actions(
        self, conn: psycopg.AsyncConnection[Any], chunk: list[Ready]
    ) -> dict[int, str]:
        try:
            verdicts = await timer_sql.fire_actions(
                conn,
                [(item.key[1], item.due, item.late) for item in chunk],
                now=self.clock.now(),
                worker=self.worker_id,
                stale_after=timer_policy.STALE_AFTER,
            )
        except psycopg.OperationalError:
            raise  # the lane is gone: the component restarts and reloads every row
        except psycopg.Error:
            logger.exception(
                "batch of pending actions failed; firing them one by one",
                extra={"event": "alarm.timer_batch_failed", "count": len(chunk)},
            )
            return {item.key[1]: "orm" for item in chunk}
        names = {"fire": "fired"}
        self._count(Counter(f"action.{names.get(v, v)}" for v in verdicts.values() if v != "orm"))
        return verdicts

    async def _fire_orm(self, items: list[Ready]) -> None:
        orm = self._orm
        assert orm is not None, "the ORM store is set while the component runs"
        work = [(item.key[0], item.key[1], item.due, item.late) for item in items]
        try:
            outcomes = await orm.call(timer_store.fire, work, self.worker_id, self.clock.now)
        except Exception:
            logger.exception(
                "timers could not fire; retrying later",
                extra={"event": "alarm.timer_retry", "count": len(items)},
            )
            self._retry(items)
            return
        for item, (_, outcome) in zip(items, outcomes, strict=True):
            if outcome == "failed" and item.key[0] != ACTION:
                self._retry([item])  # a runtime or a delay must not be lost
            else:
                self._retries.pop(item.key, None)
        self._count(Counter(f"{kind}.{outcome}" for (kind, *_), outcome in outcomes))

    def _retry(self, items: list[Ready]) -> None:
        later = self.clock.monotonic() + RETRY_DELAY
        for item in items:
            key = item.key
            self._retries[key] += 1
            if self._retries[key] > MAX_RETRIES:
                del self._retries[key]
                logger.error(
                    "timer given up until the next reload",
                    extra={"event": "alarm.timer_given_up", "kind": key[0], "id": key[1]},
                )
            elif key not in self.timers:
                self.timers.set_at(key, item.due, later)
        self._wake.set()

    def _count(self, outcomes: Counter[str]) -> None:
        outcomes = +outcomes  # drop zero counts
        if not outcomes:
            return
        self.outcomes.update(outcomes)
        self._progress.set()
        logger.info(
            "alarm timers fired",
            extra={"event": "alarm.timers_fired", **{k: v for k, v in sorted(outcomes.items())}},
        )

    async def _finish_orm(self) -> None:
        while pending := {task for task in self._orm_tasks if not task.done()}:
            await asyncio.wait(pending)

    # --- for tests and /healthz --------------------------------------------------------------

    async def wait_outcomes(self, outcome: str, count: int) -> None:
        """Return once ``count`` timers had ``outcome``: ``"<kind>.<what>"``, e.g.
        ``action.fired``, ``action.stale``, ``runtime.fired``, ``alarm.triggered``."""
        await self.wait_until(lambda: self.outcomes[outcome] >= count)

    async def wait_loaded(self, loads: int = 1) -> None:
        await self.wait_until(lambda: self.loads >= loads)

    async def wait_scheduled(self, key: Key, due: datetime | None = None) -> None:
        """Return once ``key`` is on the heap (due at ``due``, when given)."""
        await self.wait_until(
            lambda: key in self.timers and (due is None or self.timers.due_of(key) == due)
        )

    async def wait_quiet(self) -> None:
        """Return once the loop sleeps and no fire is in flight (lanes or ORM thread)."""
        while True:
            await self.lanes.settled()
            await self._finish_orm()
            await self.wait_until(lambda: self.sleeping)
            if not self._orm_tasks and not self.lanes.in_flight:
                return

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        while not predicate():
            self._progress.clear()
            await self._progress.wait()

    def health(self) -> dict[str, Any]:
        deadline = self._next_wall_deadline()
        return {
            "timers": len(self.timers),
            "next_due_at": deadline.isoformat() if deadline else None,
            "fired": dict(self.outcomes),
            "orm_in_flight": len(self._orm_tasks),
            "lanes": {
                "size": self.lanes.size,
                "in_flight": self.lanes.in_flight,
                "queued": self.lanes.queued,
                "statements": self.lanes.statements,
            },
            "loads": self.loads,
            "malformed_notices": self.malformed,
        }
