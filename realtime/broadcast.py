"""The only code that calls the channel layer's ``group_send``.

Callers (the worker's status hub on the event loop, ``transaction.on_commit`` receivers in ORM
threads of the web process or the worker) hand a message to the process's ``Publisher`` and
return at once: ``submit`` only takes a lock to put the message in a dict. A daemon thread
with an event loop of its own sends what is pending, in sequence order, in one group message
per batch. Waiting costs nothing: the thread sleeps until a submit wakes it.

Coalescing: only the newest message per key is kept (``system_status`` and ``alarm_state`` are
whole snapshots; ``entity_state`` is keyed by entity; ``task_runs_changed`` is a hint without
data), so a burst while a send is in flight, or an outage, sends the latest state once.

A process that exits right after a change (``manage.py run_task``) still sends it: the thread
is a daemon, and an exit handler waits (at most ``EXIT_FLUSH`` s) for what is pending.

Redis outages: a failed send keeps its messages pending (the newer ones win) and is retried
after a backoff (0.25 s doubling to 5 s) while the callers go on. The first failure is logged
(``realtime.publish_failed``), then at most one line a minute (``realtime.publish_failing``),
and ``realtime.publish_recovered`` once a send works again. Clients that lost their socket
meanwhile reconnect and get fresh snapshots; the sequence numbers let them drop anything older.

Receivers: each web process has one member in the group, its relay (``realtime.relay``),
which renews its entry every ``MEMBERSHIP_REFRESH`` s and fans pushes out to the process's
consumers; ``group_expiry`` (settings) can therefore be short, and the entry of a process that
died drops out within minutes instead of filling its queue to capacity and making every send
log "over capacity" for a day.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from realtime.sequence import next_sequence
from services.backoff import exponential

logger = logging.getLogger(__name__)

PUSH_TYPE = "realtime.push"  # the group message type; realtime.relay receives it
MEMBERSHIP_REFRESH = 60.0  # seconds between a relay's group_add renewals
MAX_BATCH = 100
EXIT_FLUSH = 2.0  # seconds an exiting process waits for its pending pushes
KINDS = ("alarm_state", "system_status", "entity_state")
# Pushes no client sees: each web process's relay acts on them (realtime.summary).
HINT_KINDS = frozenset({"task_runs_changed"})


@dataclass(frozen=True)
class Push:
    kind: str
    key: str
    sequence: int
    text: str  # the client message, serialised once for every receiver


def message(
    kind: str, payload: Any, *, sequence: int, timestamp: datetime | None = None
) -> dict[str, Any]:
    """A message as a WebSocket client receives it."""
    stamp = (timestamp or datetime.now(UTC)).isoformat()
    return {"type": kind, "timestamp": stamp, "sequence": sequence, "payload": payload}


def group_name() -> str:
    from django.conf import settings

    return str(settings.REALTIME_GROUP)


def default_layer() -> Any:
    from channels.layers import get_channel_layer

    return get_channel_layer()


class Publisher:
    """Sends submitted pushes from a thread of its own; see the module docstring."""

    def __init__(
        self,
        *,
        layer: Callable[[], Any] = default_layer,
        group: Callable[[], str] = group_name,
        retry_base: float = 0.25,
        retry_cap: float = 5.0,
        send_timeout: float = 5.0,
        max_pending: int = 2000,
        log_every: float = 60.0,
    ) -> None:
        self._layer, self._group = layer, group
        self.retry_base, self.retry_cap = retry_base, retry_cap
        self.send_timeout, self.max_pending, self.log_every = send_timeout, max_pending, log_every
        self._lock = threading.Condition()
        self._pending: dict[str, Push] = {}
        self._in_flight = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self._failures = 0  # consecutive failed sends
        self.failed_sends = 0
        self._failing_since_log = 0
        self._last_log = 0.0
        self.sent = 0  # group messages sent
        self.pushes = 0  # client messages sent (several per group message in a burst)
        self.dropped = 0  # coalesced away, or over max_pending during an outage

    # --- callers' side: any thread, never blocks --------------------------------------------

    def submit(self, push: Push) -> None:
        with self._lock:
            if self._closed:
                return
            self._merge(push)
            self._start_locked()
            loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # loop closed while exiting
                loop.call_soon_threadsafe(wake.set)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait (blocking) until nothing is pending or being sent; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._pending or self._in_flight:
                left = deadline - time.monotonic()
                if left <= 0 or self._thread is None:
                    return False
                self._lock.wait(left)
        return True

    def wait_for(self, predicate: Callable[[Publisher], bool], timeout: float = 5.0) -> bool:
        """Block until ``predicate(self)`` holds after a send (tests); False on timeout."""
        with self._lock:
            return self._lock.wait_for(lambda: predicate(self), timeout)

    async def aflush(self, within: float = 5.0) -> bool:
        """``flush`` for async code: waits in a thread, never on the event loop."""
        return await asyncio.to_thread(self.flush, within)

    def close(self, timeout: float = 2.0) -> None:
        """Send what is pending (at most ``timeout`` s), then stop the thread."""
        self.flush(timeout)
        atexit.unregister(self.flush)
        with self._lock:
            self._closed = True
            loop, wake, thread = self._loop, self._wake, self._thread
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(wake.set)
        if thread is not None:
            thread.join(timeout)

    def health(self) -> dict[str, Any]:
        with self._lock:
            return {
                "pending": len(self._pending),
                "sent": self.sent,
                "dropped": self.dropped,
                "failing": self._failures > 0,
            }

    def _merge(self, push: Push) -> None:
        current = self._pending.get(push.key)
        if current is not None:
            self.dropped += 1
            if current.sequence > push.sequence:
                return
        self._pending[push.key] = push
        while len(self._pending) > self.max_pending:
            oldest = min(self._pending.values(), key=lambda p: p.sequence)
            del self._pending[oldest.key]
            self.dropped += 1

    def _start_locked(self) -> None:
        if self._thread is not None:
            return
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._serve, args=(ready,), name="realtime-publisher", daemon=True
        )
        self._thread.start()
        atexit.register(self.flush, EXIT_FLUSH)  # daemon threads still run in exit handlers
        self._lock.release()  # the thread takes the lock to publish its loop
        try:
            ready.wait()
        finally:
            self._lock.acquire()

    # --- the publisher thread ---------------------------------------------------------------

    def _serve(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        wake = asyncio.Event()
        wake.set()  # submits made before the loop was published are drained first
        with self._lock:
            self._loop, self._wake = loop, wake
        ready.set()
        try:
            loop.run_until_complete(self._main())
        finally:
            loop.close()

    async def _main(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            with self._lock:
                if self._closed:
                    return
                batch = sorted(self._pending.values(), key=lambda p: p.sequence)[:MAX_BATCH]
                for push in batch:
                    del self._pending[push.key]
                self._in_flight = len(batch)
            if not batch:
                continue
            ok = await self._send(batch)
            with self._lock:
                if not ok:
                    for push in batch:
                        self._merge_back(push)
                self._in_flight = 0
                if self._pending:
                    self._wake.set()
                self._lock.notify_all()
            if not ok:
                delay = exponential(self._failures, base=self.retry_base, cap=self.retry_cap)
                await asyncio.sleep(delay)

    def _merge_back(self, push: Push) -> None:
        """A failed push goes back unless something newer for its key came meanwhile."""
        current = self._pending.get(push.key)
        if current is None or current.sequence < push.sequence:
            self._pending[push.key] = push
        else:
            self.dropped += 1

    async def _send(self, batch: list[Push]) -> bool:
        items = [[p.kind, p.sequence, p.text] for p in batch]
        try:
            async with asyncio.timeout(self.send_timeout):
                await self._layer().group_send(self._group(), {"type": PUSH_TYPE, "items": items})
        except Exception as exc:
            self._record_failure(exc)
            return False
        if self._failures:
            logger.info(
                "pushes resumed",
                extra={"event": "realtime.publish_recovered", "failed_sends": self._failures},
            )
            self._failures = 0
        self.sent += 1
        self.pushes += len(batch)
        return True

    def _record_failure(self, exc: BaseException) -> None:
        self._failures += 1
        self.failed_sends += 1
        now = time.monotonic()
        error = f"{type(exc).__name__}: {exc}"
        if self._failures == 1:
            self._last_log, self._failing_since_log = now, 0
            logger.warning(
                "cannot push to WebSocket clients; retrying",
                extra={"event": "realtime.publish_failed", "error": error},
            )
        elif now - self._last_log >= self.log_every:
            logger.warning(
                "still cannot push to WebSocket clients",
                extra={
                    "event": "realtime.publish_failing",
                    "error": error,
                    "failed_sends": self._failing_since_log + 1,
                },
            )
            self._last_log, self._failing_since_log = now, 0
        else:
            self._failing_since_log += 1


_publisher: Publisher | None = None
_publisher_lock = threading.Lock()


def get_publisher() -> Publisher:
    global _publisher
    with _publisher_lock:
        if _publisher is None:
            _publisher = Publisher()
        return _publisher


def _submit(kind: str, key: str, payload: Any, sequence: int | None, at: datetime | None) -> int:
    number = sequence if sequence is not None else next_sequence()
    text = json.dumps(message(kind, payload, sequence=number, timestamp=at), default=str)
    get_publisher().submit(Push(kind, key, number, text))
    return number


def system_status(
    payload: dict[str, Any], *, sequence: int, timestamp: datetime | None = None
) -> int:
    """Push the whole system status (numbered by the status table's write)."""
    return _submit("system_status", "system_status", payload, sequence, timestamp)


def alarm_state(snapshot: dict[str, Any], *, timestamp: datetime | None = None) -> int:
    """Push the alarm's state; numbered now, after the change committed."""
    return _submit("alarm_state", "alarm_state", snapshot, None, timestamp)


def entity_state(entity: dict[str, Any], *, timestamp: datetime | None = None) -> int:
    """Push one entity's state; coalesced per entity."""
    key = f"entity_state:{entity.get('entity_id')}"
    return _submit("entity_state", key, entity, None, timestamp)


def task_runs_changed(reason: str = "", jobs: tuple[str, ...] | list[str] = ()) -> int:
    """Tell the web processes that jobs or runs changed (no data: each relay reads them once)."""
    payload = {"reason": reason, "jobs": list(jobs)}
    return _submit("task_runs_changed", "task_runs_changed", payload, None, None)


def flush(timeout: float = 5.0) -> bool:
    """Wait until this process's pushes are sent (tests, shutdown)."""
    return get_publisher().flush(timeout)
