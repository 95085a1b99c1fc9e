"""``GET /healthz`` for the worker, served from a thread of its own.

The server runs its own event loop in a daemon thread so that it can still answer when the
worker's loop is stuck: each request asks the worker's loop for a snapshot and waits at most
``probe_timeout`` seconds. 200 while the loop answers and the worker can reach its database;
503 when the loop does not answer in time, while shutting down, or when the database is known
to be unreachable. Idle costs nothing: the thread sleeps in ``accept`` until a request comes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any

from aiohttp import web

logger = logging.getLogger(__name__)

Snapshot = Callable[[], dict[str, Any]]


class HealthServer:
    def __init__(
        self,
        snapshot: Snapshot,
        worker_loop: asyncio.AbstractEventLoop,
        *,
        host: str,
        port: int,
        probe_timeout: float = 2.0,
    ) -> None:
        self._snapshot = snapshot
        self._worker_loop = worker_loop
        self.host = host
        self.port = port
        self.probe_timeout = probe_timeout
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None

    def start(self) -> None:
        """Start serving; raises if the port cannot be bound."""
        self._thread = threading.Thread(target=self._serve, name="healthz", daemon=True)
        self._thread.start()
        self._started.wait(timeout=10)
        if self._error is not None:
            raise self._error
        logger.info(
            "health endpoint listening",
            extra={"event": "health.listening", "url": f"http://{self.host}:{self.port}/healthz"},
        )

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop may already be closed
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop = None

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._bind())
        except BaseException as exc:
            self._error = exc
            self._started.set()
            loop.close()
            return
        self._started.set()
        try:
            loop.run_forever()
        finally:
            if self._runner is not None:
                loop.run_until_complete(self._runner.cleanup())
            loop.close()

    async def _bind(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        if self.port == 0:  # an ephemeral port (tests): report the one we got
            self.port = self._runner.addresses[0][1]

    async def _handle(self, request: web.Request) -> web.Response:
        body = await self._probe()
        return web.json_response(body, status=200 if body["status"] == "ok" else 503)

    async def _probe(self) -> dict[str, Any]:
        async def take() -> dict[str, Any]:
            return self._snapshot()

        probe = take()
        try:
            future = asyncio.run_coroutine_threadsafe(probe, self._worker_loop)
        except RuntimeError:  # the worker's loop is closed
            probe.close()
            return {"status": "unresponsive", "reason": "worker loop closed"}
        try:
            async with asyncio.timeout(self.probe_timeout):
                snapshot = await asyncio.wrap_future(future)
        except TimeoutError:
            future.cancel()
            reason = f"worker loop did not answer within {self.probe_timeout}s"
            return {"status": "unresponsive", "reason": reason}
        return {"status": status_of(snapshot), **snapshot}


def status_of(snapshot: dict[str, Any]) -> str:
    """ok, stopping or db_unreachable: the first problem wins."""
    if snapshot.get("stopping"):
        return "stopping"
    if snapshot.get("db", {}).get("connected") is False:
        return "db_unreachable"
    return "ok"
