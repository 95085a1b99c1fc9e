"""The cron component: registered tasks fire at their slots, each slot once across all workers.

Every replica computes the same slots (schedules are pure and deterministic) and races for a
unique (task, slot) row; the winner runs it. Between fires the component sleeps until the
earliest deadline on its timer heap: no query, no log line. Heap keys are ``(task, slot)``, so a
slot whose claim failed (database away) can be put back and tried again without losing it.

At start: sync ScheduledJob rows from the registry, close runs abandoned by dead workers, and
catch up each task's latest missed slot once (coalesced) if it is within the task's grace.
"Run now" requests from the admin arrive by NOTIFY on ``services_jobs``. A task gated by
``enabled_when`` with ``enabled_changes`` keeps no slot while its predicate says no: the
predicate is asked at start and again on each NOTIFY of that channel (and after a reconnect
of the listener), so a disabled task costs nothing at idle.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from services import store
from services.claims import Claim
from services.clock import Clock
from services.dbthread import AsyncStore
from services.execution import Executor, Outcome
from services.registry import TaskSpec
from services.schedules import latest_slot
from services.slots import Due, claim_batch, is_enabled
from services.store import JobState
from services.timers import TimerHeap

logger = logging.getLogger(__name__)

REQUESTS_CHANNEL = "services_jobs"
CLAIM_RETRY_DELAY = 5.0  # seconds before a slot whose claim failed is tried again
Slot = tuple[str, datetime]


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class CronComponent:
    name = "cron"

    def __init__(
        self,
        specs: list[TaskSpec],
        db: AsyncStore,
        executor: Executor,
        clock: Clock,
        *,
        subscribe: Callable[..., Callable[[], None]] | None = None,
    ) -> None:
        self.specs = {spec.name: spec for spec in specs}
        self.db = db
        self.executor = executor
        self.clock = clock
        self._subscribe = subscribe
        self.heap: TimerHeap[Slot] = TimerHeap()
        self._wake = asyncio.Event()
        self._requests_pending = True  # requests made while no worker ran are taken at start
        self._inflight: set[asyncio.Task[list[Outcome | None]]] = set()
        self.launched = 0  # runs started since creation; tests and health read it
        self._launch_seen = asyncio.Event()
        self._gated = {n: s for n, s in self.specs.items() if s.enabled_changes and s.schedule}
        self.disabled: set[str] = set()  # gated tasks whose predicate said no: no slot kept
        self._gates_pending = False
        self.gate_reviews = 0  # predicates asked again after a notification (tests wait on it)
        self._reviewed = asyncio.Event()

    # --- lifecycle ---------------------------------------------------------------------------

    async def run(self, stopping: asyncio.Event) -> None:
        self._wake = asyncio.Event()
        self.heap = TimerHeap()
        await self._start(catch_up_source="catch_up", stopping=stopping)
        unsubscribe = self._listen()
        relay = asyncio.create_task(self._relay_stop(stopping))
        try:
            await self._loop(stopping)
            await self.wait_idle()
        except asyncio.CancelledError:
            await self._cancel_runs()  # past the grace: each run records its cancellation
            raise
        finally:
            relay.cancel()
            unsubscribe()

    async def run_once(self, stopping: asyncio.Event) -> list[Outcome | None]:
        """Run every due slot once (the latest missed one per task, within grace), then return."""
        await self._start(catch_up_source="scheduled", stopping=stopping, plan_next=False)
        batches = await asyncio.gather(*self._inflight)  # before they leave the set
        return [outcome for batch in batches for outcome in batch]

    async def _start(
        self, *, catch_up_source: str, stopping: asyncio.Event, plan_next: bool = True
    ) -> None:
        now = self.clock.now()
        states = await self.db.call(store.sync_jobs, list(self.specs.values()), now)
        await self.db.call(store.recover_abandoned, now)
        self.disabled = await self.db.call(_disabled, list(self._gated.values()))
        missed = [
            Due(spec, slot, catch_up_source)
            for spec in self.specs.values()
            if spec.schedule is not None
            and spec.name not in self.disabled
            and spec.name in states
            and (slot := self._plan(spec, states[spec.name], now, plan_next)) is not None
        ]
        if missed:
            self._launch(missed, stopping)
        logger.info(
            "cron ready",
            extra={"event": "cron.ready", "jobs": len(self.specs), "timers": len(self.heap)},
        )

    def _plan(
        self, spec: TaskSpec, state: JobState, now: datetime, plan_next: bool
    ) -> datetime | None:
        """Heap the task's next slot; return its missed slot if it is to be caught up now."""
        assert spec.schedule is not None
        anchor = state.last_slot_at or now
        missed = latest_slot(spec.schedule, anchor, now) if spec.catch_up else None
        if plan_next:
            self._schedule_after(spec, max(now, missed or now), now)
        if missed is not None and self._fire_at(spec, missed) > now:
            self.heap.schedule((spec.name, missed), self._fire_at(spec, missed))  # jitter pending
            return None
        if missed is not None and (now - missed).total_seconds() <= spec.catch_up_grace:
            return missed
        return None

    def _listen(self) -> Callable[[], None]:
        if self._subscribe is None:
            return lambda: None
        subscribe = self._subscribe
        unsubscribes = [subscribe(REQUESTS_CHANNEL, self._on_request, on_connect=self._on_request)]
        for channel in sorted({spec.enabled_changes or "" for spec in self._gated.values()}):
            unsubscribes.append(subscribe(channel, self._on_gate, on_connect=self._on_gate))

        def unsubscribe() -> None:
            for undo in unsubscribes:
                undo()

        return unsubscribe

    def _on_gate(self, _payload: str = "") -> None:
        self._gates_pending = True
        self._wake.set()

    async def _review_gates(self) -> None:
        """Ask the gated tasks' predicates again; plan the next slot of those now enabled."""
        try:
            disabled = await self.db.call(_disabled, list(self._gated.values()))
        except Exception:
            logger.error("could not ask enabled_when", exc_info=True,
                         extra={"event": "cron.gates_failed"})  # fmt: skip
            return
        now = self.clock.now()
        before, self.disabled = self.disabled, disabled
        for name in sorted(before - disabled):
            logger.info("task enabled", extra={"event": "cron.task_enabled", "task": name})
            self._schedule_after(self._gated[name], now, now)
        for name in sorted(disabled - before):  # its slot on the heap is dropped when due
            logger.info("task disabled", extra={"event": "cron.task_disabled", "task": name})
        self.gate_reviews += 1
        self._reviewed.set()

    async def wait_reviewed(self, count: int) -> None:
        """Return once the gated tasks' predicates were asked again ``count`` times."""
        while self.gate_reviews < count:
            self._reviewed.clear()
            await self._reviewed.wait()

    def _on_request(self, _payload: str = "") -> None:
        self._requests_pending = True
        self._wake.set()

    async def _relay_stop(self, stopping: asyncio.Event) -> None:
        await stopping.wait()
        self._wake.set()

    # --- the loop --------------------------------------------------------------------------

    async def _loop(self, stopping: asyncio.Event) -> None:
        while True:
            self._wake.clear()  # before looking for work, so no wake-up is lost
            if stopping.is_set():
                return
            if self._requests_pending:
                self._requests_pending = False
                await self._take_requests(stopping)
            if self._gates_pending:
                self._gates_pending = False
                await self._review_gates()
            now = self.clock.now()
            due = [
                Due(self.specs[name], slot, "scheduled")
                for (name, slot), _ in self.heap.pop_due(now)
                if name not in self.disabled  # dropped: its next slot comes when enabled
            ]
            for item in due:
                assert item.slot is not None
                self._schedule_after(item.spec, item.slot, now)
            if due:
                self._launch(due, stopping)
            await self.clock.sleep_until(self.heap.next_deadline(), self._wake)

    def _fire_at(self, spec: TaskSpec, slot: datetime) -> datetime:
        assert spec.schedule is not None
        return slot + timedelta(seconds=spec.schedule.fire_delay(spec.name, slot))

    def _schedule_after(self, spec: TaskSpec, after: datetime, now: datetime) -> None:
        """Put the task's next slot on the heap; if the loop fell behind, only the latest one."""
        assert spec.schedule is not None
        if spec.name in self.disabled:
            return
        slot = spec.schedule.next_slot(after)
        if slot is None:
            return
        if self._fire_at(spec, slot) < now:
            slot = latest_slot(spec.schedule, after, now) or slot
        self.heap.schedule((spec.name, slot), self._fire_at(spec, slot))

    def _launch(self, due: list[Due], stopping: asyncio.Event) -> None:
        task = asyncio.create_task(self._run_batch(due, stopping), name="cron-batch")
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)
        self.launched += len(due)
        self._launch_seen.set()

    async def wait_launched(self, count: int) -> None:
        """Return once ``count`` runs have been launched (claims may still be under way)."""
        while self.launched < count:
            self._launch_seen.clear()
            await self._launch_seen.wait()

    async def _cancel_runs(self) -> None:
        for task in self._inflight:
            task.cancel()
        await asyncio.gather(*self._inflight, return_exceptions=True)

    def in_flight(self) -> frozenset[asyncio.Task[list[Outcome | None]]]:
        return frozenset(self._inflight)

    async def wait_idle(self) -> None:
        """Return once every launched run has finished and recorded its outcome."""
        # Only tasks not yet done: a done one leaves the set when its callback runs, and
        # awaiting done tasks alone would not yield to let that happen (a busy loop).
        while pending := {task for task in self._inflight if not task.done()}:
            await asyncio.wait(pending)

    # --- runs ------------------------------------------------------------------------------

    async def _run_batch(self, due: list[Due], stopping: asyncio.Event) -> list[Outcome | None]:
        try:
            claims = await claim_batch(self.db, self.executor, self.clock.now(), due)
        except Exception:
            logger.error(
                "could not claim runs", exc_info=True, extra={"event": "cron.claim_failed"}
            )
            for item in due:
                self._retry_claim_later(item.spec, item.slot)
            return [None] * len(due)
        runs = [
            self._execute(item, claim, stopping) for item, claim in zip(due, claims, strict=True)
        ]
        return list(await asyncio.gather(*runs))

    async def _execute(
        self, item: Due, claim: Claim | None, stopping: asyncio.Event
    ) -> Outcome | None:
        name = item.spec.name
        if claim is None or claim.outcome != "claimed" or claim.run_id is None:
            if claim is not None and claim.outcome == "skipped":
                logger.info("run skipped", extra={"event": "task.skipped", "task": name})
            if claim is not None and claim.outcome == "refused":
                logger.warning(
                    "run now refused: already running",
                    extra={"event": "cron.run_now_refused", "task": name, "detail": claim.detail},
                )
            return None
        slot = item.slot or self.clock.now()
        kwargs: dict[str, Any] = {"slot": slot} if item.spec.wants_slot else {}
        return await self.executor.execute(item.spec, claim.run_id, kwargs, stopping)

    def _retry_claim_later(self, spec: TaskSpec, slot: datetime | None) -> None:
        now = self.clock.now()
        if slot is not None and (now - slot).total_seconds() <= max(spec.catch_up_grace, 60.0):
            self.heap.schedule((spec.name, slot), now + timedelta(seconds=CLAIM_RETRY_DELAY))
            self._wake.set()

    async def _take_requests(self, stopping: asyncio.Event) -> None:
        try:
            names = await self.db.call(store.take_run_requests)
        except Exception:
            logger.error(
                "could not read run requests",
                exc_info=True,
                extra={"event": "cron.requests_failed"},
            )
            return
        due = [Due(self.specs[name], None, "manual") for name in names if name in self.specs]
        for item in due:
            logger.info(
                "run requested", extra={"event": "cron.run_requested", "task": item.spec.name}
            )
        if due:
            self._launch(due, stopping)

    def health(self) -> dict[str, Any]:
        deadline = self.heap.next_deadline()
        return {
            "jobs": len(self.specs),
            "next_fire_at": deadline.isoformat() if deadline else None,
            "in_flight": len(self._inflight),
            "disabled": sorted(self.disabled),
            **self.executor.health(),
        }


def _disabled(specs: list[TaskSpec]) -> set[str]:
    return {spec.name for spec in specs if not is_enabled(spec)}
