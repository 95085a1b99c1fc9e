"""The worker's one LISTEN connection; it wakes whoever subscribed to a channel.

NOTIFY is only a hint that a table changed: notifications sent while we were disconnected are
gone. So after every (re)connect the listener LISTENs on every channel first and then calls
each subscriber's ``on_connect``, which must re-read its table.

Waiting costs nothing at idle: instead of psycopg's ``notifies()`` generator (which wakes the
event loop about 10 times a second) the socket is watched with ``loop.add_reader`` and
notifications are read straight from libpq when it becomes readable.

psycopg's own query wait (``waiting.wait_async``) also uses ``add_reader`` on the same fd and
removes it when done, which would silently drop ours. So the reader is removed around every
query we run (LISTEN/UNLISTEN, all in the session task), and notifications psycopg reads
during those queries reach us through ``add_notify_handler``. No query runs while the reader
is installed, so reading libpq directly never races psycopg's result processing.

A burst (one transaction rescheduling thousands of rows is thousands of notifications) is
handed out ``DISPATCH_CHUNK`` at a time, one chunk per turn of the event loop, so whatever
else is ready meanwhile (a timer coming due) runs between two chunks instead of after all.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn

import psycopg
from psycopg import pq, sql

from services import db
from services.backoff import exponential

logger = logging.getLogger(__name__)

APPLICATION_NAME = "alarm-worker-listener"
_CHANNEL_NAME = re.compile(r"[a-z_][a-z0-9_]*")
_MAX_CHANNEL_LENGTH = 63  # PostgreSQL's NAMEDATALEN - 1
DISPATCH_CHUNK = 25  # notifications per turn of the event loop (~0.3 ms of work); a task
# woken meanwhile takes several turns to reach its statement, each behind one chunk


def default_conninfo() -> str:
    return db.conninfo(APPLICATION_NAME)


def validate_channel(channel: str) -> str:
    """Return ``channel`` if it is a plain lower-case identifier PostgreSQL keeps as is."""
    if len(channel) > _MAX_CHANNEL_LENGTH or not _CHANNEL_NAME.fullmatch(channel):
        raise ValueError(
            f"channel {channel!r} must match [a-z_][a-z0-9_]* and be at most 63 characters"
        )
    return channel


@dataclass(eq=False)  # identity equality: the same callbacks may be subscribed twice
class _Subscription:
    channel: str
    on_notify: Callable[[str], None]
    on_connect: Callable[[], None] | None


class Listener:
    """Holds one autocommit psycopg connection that LISTENs for every subscribed channel."""

    name = "listener"

    def __init__(
        self,
        conninfo_factory: Callable[[], str] = default_conninfo,
        *,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self._conninfo_factory = conninfo_factory
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._rng = rng
        self._subscribers: dict[str, list[_Subscription]] = {}
        # Subscriptions whose on_connect is still owed (all of them right after a connect).
        self._unannounced: list[_Subscription] = []
        self._encoding = "utf-8"
        self._reader_fd: int | None = None
        self._reader_conn: psycopg.AsyncConnection[Any] | None = None
        self._drain_scheduled = False
        self._listened: set[str] = set()
        self._wake = asyncio.Event()  # subscriptions changed, or the connection was lost
        self._lost: psycopg.Error | None = None
        # Set while LISTEN is in place and the on_connect callbacks have run; cleared on loss.
        self.ready = asyncio.Event()
        self._state = "stopped"
        self._listening_since: datetime | None = None
        self._connects = 0
        self._failures = 0
        self._last_error: str | None = None

    # --- API for other components -------------------------------------------------------

    def subscribe(
        self,
        channel: str,
        on_notify: Callable[[str], None],
        on_connect: Callable[[], None] | None = None,
    ) -> Callable[[], None]:
        """Call ``on_notify(payload)`` for each NOTIFY on ``channel``; returns unsubscribe.

        ``on_connect`` runs once LISTEN is in place: right away if connected, and again after
        every reconnect. Callbacks run on the event loop and must not block.
        """
        subscription = _Subscription(validate_channel(channel), on_notify, on_connect)
        self._subscribers.setdefault(channel, []).append(subscription)
        self._unannounced.append(subscription)
        self._wake.set()

        def unsubscribe() -> None:
            subscribers = self._subscribers.get(channel, [])
            if subscription in subscribers:
                subscribers.remove(subscription)
                if not subscribers:
                    del self._subscribers[channel]
                self._wake.set()

        return unsubscribe

    def health(self) -> dict[str, Any]:
        """``channels`` are those LISTENed on the current connection (empty when down)."""
        since = self._listening_since
        return {
            "state": self._state,
            "listening_since": since.isoformat() if since else None,
            "reconnects": max(self._connects - 1, 0),
            "last_error": self._last_error,
            "channels": sorted(self._listened),
        }

    # --- supervision: connect, serve, back off ------------------------------------------

    async def run(self, stopping: asyncio.Event) -> None:
        stop_waiter = asyncio.ensure_future(stopping.wait())
        try:
            while not stopping.is_set():
                error = await self._session_until(stop_waiter)
                if error is None:
                    break
                delay = self._record_failure(error)
                await asyncio.wait({stop_waiter}, timeout=delay)
        finally:
            stop_waiter.cancel()
            self._state = "stopped"
            self._listening_since = None
            logger.info("listener stopped", extra={"event": "listener.stopped"})

    async def _session_until(self, stop_waiter: asyncio.Future[Any]) -> BaseException | None:
        """Run one connection until it fails (return the error) or stopping (return None)."""
        session = asyncio.ensure_future(self._session())
        try:
            await asyncio.wait({session, stop_waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not session.done():
                session.cancel()
                await asyncio.wait({session})  # its finally closes the connection
        if stop_waiter.done():
            return None
        error = session.exception()
        if isinstance(error, psycopg.Error | OSError):
            return error
        raise error or RuntimeError("listener session ended without an error")

    def _record_failure(self, error: BaseException) -> float:
        self._failures += 1
        self._last_error = f"{type(error).__name__}: {error}"
        was_listening = self._listening_since is not None
        self._listening_since = None
        self._state = "backoff"
        event, text = (
            ("listener.disconnected", "LISTEN connection lost")
            if was_listening
            else ("listener.connect_failed", "LISTEN connection failed")
        )
        logger.warning(text, extra={"event": event, "error": self._last_error})
        # Full jitter: many workers restarted by one database restart spread their reconnects.
        delay = self._rng() * exponential(
            self._failures, base=self._backoff_base, cap=self._backoff_cap
        )
        logger.info(
            "reconnecting to LISTEN later",
            extra={"event": "listener.reconnect_scheduled", "delay": round(delay, 3)},
        )
        return delay

    async def _session(self) -> NoReturn:
        self._state = "connecting"
        self._lost = None
        conn = await psycopg.AsyncConnection.connect(self._conninfo_factory(), autocommit=True)
        try:
            self._encoding = conn.info.encoding
            self._wake.clear()  # wake-ups from before this connection are covered below
            conn.add_notify_handler(lambda notify: self._dispatch(notify.channel, notify.payload))
            self._listened = set()
            self._unannounced = [s for subs in self._subscribers.values() for s in subs]
            await self._sync_channels(conn)
            self._mark_listening(conn)
            self._announce()
            while True:
                await self._wake.wait()
                self._wake.clear()
                if self._lost is not None:
                    raise self._lost
                await self._sync_channels(conn)
                self._announce()
        finally:
            self._remove_reader()
            self._listened = set()
            self.ready.clear()
            await conn.close()

    def _mark_listening(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self._connects += 1
        self._failures = 0
        self._state = "listening"
        self._listening_since = datetime.now(tz=UTC)
        logger.info(
            "listening",
            extra={
                "event": "listener.connected",
                "channels": len(self._listened),
                "backend_pid": conn.info.backend_pid,
                "reconnects": max(self._connects - 1, 0),
            },
        )

    # --- channels and callbacks ---------------------------------------------------------

    async def _sync_channels(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """LISTEN/UNLISTEN so the connection matches the subscriptions; reader stays ours."""
        wanted = set(self._subscribers)
        to_listen, to_unlisten = wanted - self._listened, self._listened - wanted
        if to_listen or to_unlisten or self._reader_fd is None:
            self._remove_reader()
            for channel in sorted(to_listen):
                await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                self._listened.add(channel)
            for channel in sorted(to_unlisten):
                await conn.execute(sql.SQL("UNLISTEN {}").format(sql.Identifier(channel)))
                self._listened.discard(channel)
            self._add_reader(conn)

    def _announce(self) -> None:
        """Call on_connect of subscriptions whose channel is LISTENed now (once each)."""
        pending, self._unannounced = self._unannounced, []
        for subscription in pending:
            if subscription not in self._subscribers.get(subscription.channel, []):
                continue  # unsubscribed before we got to it
            if subscription.channel not in self._listened:
                self._unannounced.append(subscription)  # subscribed during our LISTENs
            elif subscription.on_connect is not None:
                self._call(subscription.on_connect, subscription.channel)
        self.ready.set()

    def _dispatch(self, channel: str, payload: str) -> None:
        # A copy: a callback may unsubscribe (itself or others) while we iterate.
        for subscription in list(self._subscribers.get(channel, ())):
            self._call(subscription.on_notify, channel, payload)

    def _call(self, callback: Callable[..., None], channel: str, *args: str) -> None:
        try:
            callback(*args)
        except Exception:
            logger.exception(
                "listener callback failed",
                extra={"event": "listener.callback_failed", "channel": channel},
            )

    # --- the socket ---------------------------------------------------------------------

    def _add_reader(self, conn: psycopg.AsyncConnection[Any]) -> None:
        # Remember the fd: once the connection is lost, conn.fileno() raises.
        self._reader_fd, self._reader_conn = conn.fileno(), conn
        asyncio.get_running_loop().add_reader(self._reader_fd, self._on_readable, conn)
        # psycopg may have buffered notifications while our reader was away.
        self._drain(conn)

    def _remove_reader(self) -> None:
        if self._reader_fd is not None:
            asyncio.get_running_loop().remove_reader(self._reader_fd)
            self._reader_fd, self._reader_conn = None, None

    def _on_readable(self, conn: psycopg.AsyncConnection[Any]) -> None:
        try:
            conn.pgconn.consume_input()  # raises on EOF or a socket error
            if conn.pgconn.status != pq.ConnStatus.OK:
                raise psycopg.OperationalError("connection status is BAD")
        except psycopg.Error as error:
            # Stop watching at once: libpq may have closed the fd, and its number can be reused.
            self._remove_reader()
            self._lost = error
            self._wake.set()
            return
        self._drain(conn)

    def _drain(self, conn: psycopg.AsyncConnection[Any]) -> None:
        for _ in range(DISPATCH_CHUNK):
            if (notify := conn.pgconn.notifies()) is None:
                return
            self._dispatch(
                notify.relname.decode(self._encoding), notify.extra.decode(self._encoding)
            )
        # More may wait in libpq's queue, where no readiness event will announce them.
        if not self._drain_scheduled:
            self._drain_scheduled = True
            asyncio.get_running_loop().call_soon(self._drain_more, conn)

    def _drain_more(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self._drain_scheduled = False
        # Only while our reader watches this connection: during a query of ours psycopg hands
        # the rest to add_notify_handler, and a lost connection's are moot (on_connect reloads).
        if self._reader_conn is conn:
            self._drain(conn)
