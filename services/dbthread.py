"""The worker's ORM thread: one thread, one persistent connection, for all its bookkeeping.

Async code calls ORM functions through ``AsyncStore.call``. The connection is kept between
calls (no connect per run, nothing checked at idle). When a call fails because the connection
died (the server restarted, the network dropped), the connection is discarded and the call
made once more on a new one: every function of ``services.store`` is safe to repeat (a
repeated claim finds its slot taken and never runs it twice).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import sync_to_async
from django.db import connection

logger = logging.getLogger(__name__)


class AsyncStore:
    """ORM calls for async code, on a thread of its own; remembers whether the database answered."""

    def __init__(self) -> None:
        self.connected: bool | None = None
        self.last_error: str | None = None
        # A thread of our own (not asgiref's shared one): the worker's bookkeeping never queues
        # behind other sync_to_async work, and each store has exactly one connection.
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="worker-orm")

    async def call[**P, R](self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        wrapped = sync_to_async(
            _retry_on_dead_connection(fn), thread_sensitive=False, executor=self._thread
        )
        try:
            result = await wrapped(*args, **kwargs)
        except Exception as exc:
            if _is_connection_error(exc):
                self.connected, self.last_error = False, f"{type(exc).__name__}: {exc}"
            raise
        self.connected = True
        return result

    def health(self) -> dict[str, Any]:
        return {"connected": self.connected, "last_error": self.last_error}

    async def close(self) -> None:
        """Close this store's connection and stop its thread."""
        await sync_to_async(_close_connection, thread_sensitive=False, executor=self._thread)()
        self._thread.shutdown(wait=True)


def _retry_on_dead_connection[**P, R](fn: Callable[P, R]) -> Callable[P, R]:
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if not _is_connection_error(exc) or _still_usable():
                raise
            logger.warning("database connection lost", extra={"event": "db.reconnect"})
            connection.close()
            return fn(*args, **kwargs)

    return run


def _close_connection() -> None:
    connection.close()  # looked up here: ``connection`` is this thread's own


def _still_usable() -> bool:
    return connection.connection is not None and connection.is_usable()


def _is_connection_error(exc: BaseException) -> bool:
    from django.db import InterfaceError, OperationalError

    return isinstance(exc, OperationalError | InterfaceError)
