"""The outbox's result writer: results go back to the table in batches, on their own connection.

Claims and results use different connections so that a claim never queues behind a result
write (during a burst it did, for tens of milliseconds). Results wait in ``pending`` until
written: they outlive a lost connection and a restarted component, and the next writer writes
them first. Each write is shielded from cancellation, so a write that started is finished
(recorded, logged and counted) even when the component is being cancelled.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import psycopg

from notifications import outbox_sql
from notifications.outbox_sql import Result
from notifications.sending import log_result
from services.clock import Clock


class ResultWriter:
    def __init__(self, clock: Clock, worker_id: str) -> None:
        self.clock = clock
        self.worker_id = worker_id
        self.pending: list[Result] = []  # not yet in the table; kept across connections
        self.written = 0  # results recorded in the table; tests wait on it
        self._ready = asyncio.Event()
        self._changed = asyncio.Event()
        self._closing = False

    def add(self, result: Result) -> None:
        self.pending.append(result)
        self._ready.set()

    async def run(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Write whatever is pending, batch after batch, until ``close()`` and nothing is left."""
        self._ready = asyncio.Event()  # a fresh event on the loop of this run
        self._closing = False
        while True:
            if not self.pending:
                if self._closing:
                    return
                await self._ready.wait()
            self._ready.clear()
            await self.flush(conn)

    def close(self) -> None:
        """Let ``run`` return once every pending result is written."""
        self._closing = True
        self._ready.set()

    async def flush(self, conn: psycopg.AsyncConnection[Any]) -> None:
        if not self.pending:
            return
        batch, self.pending = self.pending, []
        try:
            await asyncio.shield(
                outbox_sql.record(conn, batch, worker=self.worker_id, now=self.clock.now())
            )
        except asyncio.CancelledError:
            raise  # the shielded write goes on; its results are not logged or counted
        except Exception:
            self.pending = batch + self.pending  # written by the next attempt or run
            raise
        for result in batch:
            log_result(result)
        self.written += len(batch)
        self._changed.set()

    async def wait_written(self, count: int) -> None:
        """Return once ``count`` results have been recorded in the table."""
        await self._wait(lambda: self.written >= count)

    async def wait_empty(self) -> None:
        await self._wait(lambda: not self.pending)

    async def _wait(self, done: Callable[[], bool]) -> None:
        while not done():
            self._changed.clear()
            await self._changed.wait()
