"""Running one claimed TaskRun: call the function, enforce timeout and retries, record the end.

Used by the cron component and by ``manage.py run_task`` alike. Sync functions run in daemon
threads (at most ``max_threads`` at once), each closing its own DB connections when done, so a
hung one holds only its thread — never the event loop, never process exit. The final write of
a run is shielded from cancellation: a shutdown records "cancelled", it never leaves a row
"running".
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import traceback
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import close_old_connections, connections

from services import store
from services.backoff import exponential
from services.clock import Clock
from services.dbthread import AsyncStore
from services.registry import TaskSpec

logger = logging.getLogger(__name__)

CANCELLED = "cancelled: the worker shut down before the task finished"


@dataclass(frozen=True)
class Outcome:
    status: str  # success | failure | timeout
    attempts: int
    result: Any = None
    error: str = ""
    traceback: str = ""


class Executor:
    def __init__(
        self, db: AsyncStore, clock: Clock, worker_id: str, *, lease: float, max_threads: int
    ) -> None:
        self.db = db
        self.clock = clock
        self.worker_id = worker_id
        self.lease = lease
        self.max_threads = max_threads
        self._threads: asyncio.Semaphore | None = None
        self._holders = 0
        self._busy_threads = 0  # includes threads still running after their task timed out
        self._renewer: asyncio.Task[None] | None = None

    def lease_until(self) -> datetime:
        return self.clock.now() + timedelta(seconds=self.lease)

    async def execute(
        self, spec: TaskSpec, run_id: int, kwargs: dict[str, Any], stopping: asyncio.Event
    ) -> Outcome:
        """Run ``spec`` for the claimed row ``run_id`` and write its outcome."""
        async with self._holding_lease():
            try:
                outcome = await self._with_policy(spec, run_id, kwargs, stopping)
            except asyncio.CancelledError:
                await self.record_cancelled(spec, run_id)
                raise
            await self._record(spec, run_id, outcome)
        return outcome

    async def record_cancelled(self, spec: TaskSpec, run_id: int) -> None:
        await self._record(spec, run_id, Outcome("failure", 0, error=CANCELLED))

    async def _record(self, spec: TaskSpec, run_id: int, outcome: Outcome) -> None:
        write = self.db.call(
            store.finish_run,
            run_id,
            status=outcome.status,
            now=self.clock.now(),
            attempt=max(outcome.attempts, 1),
            result=outcome.result,
            error=outcome.error,
            traceback=outcome.traceback,
        )
        if not await asyncio.shield(write):
            logger.warning(
                "run was closed by another worker (lease lost)",
                extra={"event": "task.lease_lost", "task": spec.name, "run": run_id},
            )
        level = logging.INFO if outcome.status == "success" else logging.ERROR
        logger.log(
            level,
            "task %s",
            outcome.status,
            extra={"event": f"task.{outcome.status}", "task": spec.name, "run": run_id},
        )

    async def _with_policy(
        self, spec: TaskSpec, run_id: int, kwargs: dict[str, Any], stopping: asyncio.Event
    ) -> Outcome:
        attempt = 1
        while True:
            deadline = asyncio.timeout(spec.timeout)
            try:
                async with deadline:
                    result = await self.call(spec, kwargs)
                return Outcome("success", attempt, result=_jsonable(result))
            except TimeoutError as exc:
                if not deadline.expired():
                    return self._failure(spec, attempt, exc)  # raised by the task itself
                error = f"timed out after {spec.timeout:g}s (attempt {attempt})"
                return Outcome("timeout", attempt, error=error)
            except Exception as exc:
                if attempt > spec.retries or stopping.is_set():
                    return self._failure(spec, attempt, exc)
                if not await self._retry_wait(spec, run_id, attempt, exc, stopping):
                    return self._failure(spec, attempt, exc, "; shutdown before the next retry")
            attempt += 1

    async def _retry_wait(
        self, spec: TaskSpec, run_id: int, attempt: int, exc: Exception, stopping: asyncio.Event
    ) -> bool:
        """Wait the backoff before the next attempt; False if shutdown began meanwhile."""
        delay = exponential(attempt, base=spec.retry_backoff, cap=spec.retry_backoff_cap)
        error = f"{type(exc).__name__}: {exc}"
        logger.warning(
            "task failed, will retry",
            extra={"event": "task.retry", "task": spec.name, "attempt": attempt, "delay": delay},
        )
        await self.db.call(store.set_attempt, run_id, attempt + 1, f"attempt {attempt}: {error}")
        sleeper = asyncio.ensure_future(self.clock.sleep(delay))
        stopper = asyncio.ensure_future(stopping.wait())
        try:
            await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            stopper.cancel()
        return not stopping.is_set()

    @staticmethod
    def _failure(spec: TaskSpec, attempt: int, exc: BaseException, note: str = "") -> Outcome:
        text = "".join(traceback.format_exception(exc))
        return Outcome(
            "failure", attempt, error=f"{type(exc).__name__}: {exc}{note}", traceback=text
        )

    async def call(self, spec: TaskSpec, kwargs: dict[str, Any]) -> Any:
        if spec.is_async:
            return await spec.func(**kwargs)
        return await self._in_thread(spec.name, spec.func, kwargs)

    async def _in_thread(self, name: str, fn: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
        if self._threads is None:
            self._threads = asyncio.Semaphore(self.max_threads)
        threads = self._threads
        await threads.acquire()
        self._busy_threads += 1
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()

        def target() -> None:
            close_old_connections()
            result, error = None, None
            try:
                result = fn(**kwargs)
            except BaseException as exc:
                error = exc
            finally:
                connections.close_all()  # this thread's connections; nothing held at idle
            with contextlib.suppress(RuntimeError):  # the loop is closed: the worker has exited
                loop.call_soon_threadsafe(self._thread_done, threads, future, result, error)

        threading.Thread(target=target, name=f"task:{name}", daemon=True).start()
        return await future

    @contextlib.asynccontextmanager
    async def _holding_lease(self) -> AsyncIterator[None]:
        """Renew this worker's leases while at least one run is in progress, and only then."""
        self._holders += 1
        if self._renewer is None:
            self._renewer = asyncio.create_task(self._renew_leases(), name="lease-renewer")
        try:
            yield
        finally:
            self._holders -= 1
            if self._holders == 0 and self._renewer is not None:
                self._renewer.cancel()
                self._renewer = None

    async def _renew_leases(self) -> None:
        while True:
            await self.clock.sleep(self.lease / 3)
            try:
                await self.db.call(store.renew_leases, self.worker_id, self.lease_until())
            except Exception:
                logger.warning(
                    "lease renewal failed",
                    exc_info=True,
                    extra={"event": "task.lease_renew_failed"},
                )

    def _thread_done(
        self,
        threads: asyncio.Semaphore,
        future: asyncio.Future[Any],
        result: Any,
        error: BaseException | None,
    ) -> None:
        self._busy_threads -= 1
        threads.release()
        if future.done():  # timed out or cancelled meanwhile: nobody waits for this result
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def health(self) -> dict[str, Any]:
        return {"runs_in_progress": self._holders, "threads_busy": self._busy_threads}


def _jsonable(value: Any) -> Any:
    """The task's return value as JSON; anything json cannot encode becomes its str()."""
    return json.loads(json.dumps(value, default=str))
