"""Message sequence numbers that only grow: across restarts, processes and message kinds.

A number is a hybrid logical clock in microseconds: the wall time, bumped past the last number
this process issued and past any floor the caller knows (the largest number stored in the
status table). No round trip is needed, so any thread of the web process or the worker can
number a push the moment a change is committed. Wall time grows across a restart; two
processes on one host share its clock, so their numbers follow real time and never collide
in practice (the bump keeps one process's numbers strictly increasing).

Ordering against snapshots: a snapshot takes its number BEFORE it reads, and a push takes its
number AFTER its change committed; so a change the snapshot missed always carries a larger
number than the snapshot, and a client may drop any push numbered at or below its snapshot.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class HybridClock:
    def __init__(self, wall_us: Callable[[], int] | None = None) -> None:
        self._lock = threading.Lock()
        self._last = 0
        self._wall_us = wall_us or _wall_us

    def next(self, floor: int = 0) -> int:
        """A number larger than every one issued here before, than ``floor``, ~ now in µs."""
        with self._lock:
            self._last = max(self._last + 1, floor + 1, self._wall_us())
            return self._last

    def observe(self, seen: int) -> None:
        """Never issue a number at or below ``seen`` (one read from the database)."""
        with self._lock:
            self._last = max(self._last, seen)


def _wall_us() -> int:
    return time.time_ns() // 1000


_clock = HybridClock()


def next_sequence(floor: int = 0) -> int:
    return _clock.next(floor)


def observe(seen: int) -> None:
    _clock.observe(seen)
