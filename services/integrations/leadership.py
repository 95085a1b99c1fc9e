"""Which worker holds the integrations: a PostgreSQL session advisory lock, without polling.

One lock covers every integration. The MQTT-based ones (Zigbee2MQTT, Frigate) share one broker
connection, so they could not be split between workers without a second connection each, and a
home's integrations are far too light to need spreading; one lock also means one extra database
connection per worker and one failover to reason about.

Each worker holds a dedicated psycopg connection (TCP keepalives from ``services.db``, and the
same keepalives asked of the server for this session, so both ends notice a dead peer in ~30 s).
The standby sends ``SELECT pg_advisory_lock(key)`` and waits on the socket with ``add_reader``:
the server answers only when the holder's session ends (its worker died, was stopped, or lost
its connection), so waiting costs no wake-up and no query. The leader then watches the same
socket for EOF: a lost connection ends the leadership term at once, which stops the integration
components before another worker can take over; it then reconnects and waits as a standby.

There is no fencing: a leader cut off from PostgreSQL by a silent network failure ingests for up
to the keepalive time (~30 s) after the server released its lock. A worker that dies (kill -9),
stops or loses its connection cleanly releases the lock immediately.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NoReturn

import psycopg
from psycopg import pq
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from services import db
from services.backoff import exponential

logger = logging.getLogger(__name__)

APPLICATION_PREFIX = "alarm-leader "
# Asked of the server for this session: notice a dead worker as fast as it notices the server;
# never time out the wait, or the idle session that holds the lock.
SESSION_OPTIONS = (
    "-c tcp_keepalives_idle=10 -c tcp_keepalives_interval=5 -c tcp_keepalives_count=3 "
    "-c tcp_user_timeout=30000 -c statement_timeout=0 -c lock_timeout=0 "
    "-c idle_session_timeout=0 -c idle_in_transaction_session_timeout=0"
)


def lock_key(name: str) -> int:
    """A signed 64-bit advisory lock key derived from ``name`` (the same on every worker)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


INTEGRATIONS_LOCK = lock_key("alarm-worker:integrations")


def leader_conninfo(worker_id: str) -> str:
    params = conninfo_to_dict(db.conninfo((APPLICATION_PREFIX + worker_id)[:63]))
    params["options"] = f"{params.get('options') or ''} {SESSION_OPTIONS}".strip()
    return make_conninfo("", **params)


class Term:
    """One stretch of holding the lock; ``ended`` is set the moment it is lost."""

    def __init__(self) -> None:
        self.ended = asyncio.Event()
        self.started_at = datetime.now(UTC)


class Leadership:
    name = "leadership"

    def __init__(
        self,
        worker_id: str,
        conninfo: Callable[[], str] | None = None,
        *,
        key: int = INTEGRATIONS_LOCK,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.worker_id = worker_id
        self._conninfo = conninfo or (lambda: leader_conninfo(worker_id))
        self.key = key
        self._backoff_base, self._backoff_cap, self._rng = backoff_base, backoff_cap, rng
        self.term: Term | None = None
        self.changed = asyncio.Event()  # replaced at every transition; waiters hold the old one
        self._state = "stopped"
        self._holder: str | None = None
        self._terms = 0
        self._failures = 0
        self._last_error: str | None = None

    # --- for the integration components ------------------------------------------------

    @property
    def leading(self) -> bool:
        return self.term is not None and not self.term.ended.is_set()

    async def wait_term(self, stopping: asyncio.Event) -> Term | None:
        """The current leadership term once this worker leads; None if ``stopping`` first."""
        while not stopping.is_set():
            if self.term is not None and not self.term.ended.is_set():
                return self.term
            changed = asyncio.ensure_future(self.changed.wait())
            stop = asyncio.ensure_future(stopping.wait())
            try:
                await asyncio.wait({changed, stop}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                changed.cancel()
                stop.cancel()
        return None

    def health(self) -> dict[str, Any]:
        term = self.term if self.leading else None
        return {
            "state": self._state,
            "leader": self.leading,
            "worker_id": self.worker_id,
            "leading_since": term.started_at.isoformat(timespec="seconds") if term else None,
            # Who held the lock when this worker began to wait (None: nobody, or us).
            "holder": None if term else self._holder,
            "terms": self._terms,
            "last_error": self._last_error,
        }

    # --- the component -----------------------------------------------------------------

    async def run(self, stopping: asyncio.Event) -> None:
        try:
            while not stopping.is_set():
                session = asyncio.ensure_future(self._session())
                stop = asyncio.ensure_future(stopping.wait())
                try:
                    await asyncio.wait({session, stop}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    stop.cancel()
                    if not session.done():
                        session.cancel()
                        await asyncio.wait({session})
                if stopping.is_set():
                    break
                error = session.exception()
                if not isinstance(error, psycopg.Error | OSError):
                    raise error or RuntimeError("leadership session ended without an error")
                await self._back_off(error, stopping)
        finally:
            self._end_term("stopped")
            self._set_state("stopped")

    async def _back_off(self, error: BaseException, stopping: asyncio.Event) -> None:
        self._failures += 1
        self._last_error = f"{type(error).__name__}: {error}"
        self._set_state("backoff")
        delay = self._rng() * exponential(
            self._failures, base=self._backoff_base, cap=self._backoff_cap
        )
        logger.warning(
            "leadership connection failed",
            extra={"event": "leadership.connection_failed", "error": self._last_error,
                   "delay": round(delay, 3)},
        )  # fmt: skip
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await stopping.wait()

    async def _session(self) -> NoReturn:
        self._set_state("connecting")
        conn = await psycopg.AsyncConnection.connect(self._conninfo(), autocommit=True)
        try:
            self._failures = 0
            self._holder = await self._current_holder(conn)
            self._set_state("standby")
            logger.info(
                "waiting for the integrations lock",
                extra={"event": "leadership.standby", "holder": self._holder},
            )
            await self._wait_readable(conn, query=f"SELECT pg_advisory_lock({self.key})")
            self._check_results(conn)
            self._begin_term()
            await self._wait_readable(conn, query=None)  # returns only when the socket errs
            raise psycopg.OperationalError("leadership connection ended")
        except asyncio.CancelledError:
            self._end_term("stopped")
            raise
        except Exception as exc:
            self._end_term(f"{type(exc).__name__}: {exc}")
            raise
        finally:
            with contextlib.suppress(Exception):
                await conn.close()

    async def _current_holder(self, conn: psycopg.AsyncConnection[Any]) -> str | None:
        unsigned = self.key & 0xFFFF_FFFF_FFFF_FFFF
        cursor = await conn.execute(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1"
            " AND l.classid = %s AND l.objid = %s"
            " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            (unsigned >> 32, unsigned & 0xFFFF_FFFF),
        )
        row = await cursor.fetchone()
        return str(row[0]).removeprefix(APPLICATION_PREFIX) if row else None

    async def _wait_readable(
        self, conn: psycopg.AsyncConnection[Any], *, query: str | None
    ) -> None:
        """Send ``query`` (if any) and wait on the socket, without psycopg's 0.1 s wake-ups,
        until its result is in; with no query, until the connection fails (then raise)."""
        pgconn = conn.pgconn
        loop = asyncio.get_running_loop()
        fd = pgconn.socket
        if query is not None:
            pgconn.send_query(query.encode())
            while pgconn.flush():  # a few bytes: flushed at once unless the link is stuck
                await _writable(loop, fd)
        done: asyncio.Future[None] = loop.create_future()

        def on_readable() -> None:
            try:
                pgconn.consume_input()
                if pgconn.status != pq.ConnStatus.OK:
                    raise psycopg.OperationalError("connection status is BAD")
            except psycopg.Error as exc:
                if not done.done():
                    done.set_exception(exc)
                return
            if query is not None and not pgconn.is_busy() and not done.done():
                done.set_result(None)

        loop.add_reader(fd, on_readable)
        try:
            await done
        except asyncio.CancelledError:
            if query is not None:
                with contextlib.suppress(Exception):  # end the server-side wait too
                    await asyncio.wait_for(conn.cancel_safe(), 2)
            raise
        finally:
            loop.remove_reader(fd)

    def _check_results(self, conn: psycopg.AsyncConnection[Any]) -> None:
        while (result := conn.pgconn.get_result()) is not None:
            if result.status != pq.ExecStatus.TUPLES_OK:
                message = (result.error_message or b"").decode(errors="replace").strip()
                raise psycopg.OperationalError(f"pg_advisory_lock failed: {message}")

    # --- terms -------------------------------------------------------------------------

    def _begin_term(self) -> None:
        self.term = Term()
        self._terms += 1
        self._holder = None
        self._state = "leader"
        logger.info(
            "this worker now holds the integrations",
            extra={"event": "leadership.acquired", "worker_id": self.worker_id},
        )
        self._notify()

    def _end_term(self, reason: str) -> None:
        if self.term is None or self.term.ended.is_set():
            return
        self.term.ended.set()
        stopped = reason == "stopped"
        logger.log(
            logging.INFO if stopped else logging.WARNING,
            "this worker no longer holds the integrations",
            extra={
                "event": "leadership.released" if stopped else "leadership.lost",
                "worker_id": self.worker_id,
                "reason": reason,
            },
        )
        self._notify()

    def _set_state(self, state: str) -> None:
        if state != self._state:
            self._state = state
            self._notify()

    def _notify(self) -> None:
        changed, self.changed = self.changed, asyncio.Event()
        changed.set()

    @property
    def state(self) -> str:
        return self._state


async def _writable(loop: asyncio.AbstractEventLoop, fd: int) -> None:
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_writer(fd, wake)
    try:
        await ready
    finally:
        loop.remove_writer(fd)
