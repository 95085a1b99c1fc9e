"""A pure timer heap: schedule / cancel / reschedule by key, pop what is due, next deadline.

No I/O and no clock: callers pass ``now``. Due times may be any mutually comparable values
(aware datetimes in the worker, floats in benchmarks). Operations are O(log n): a cancelled or
rescheduled entry stays in the heap marked dead and is skipped when it surfaces; the heap is
rebuilt when dead entries outnumber live ones, so memory stays proportional to live timers.
Equal due times pop in the order they were scheduled.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Hashable
from typing import Any


class _Entry:
    __slots__ = ("alive", "due", "key", "seq")

    def __init__(self, due: Any, seq: int, key: Hashable) -> None:
        self.due = due
        self.seq = seq
        self.key = key
        self.alive = True

    def __lt__(self, other: _Entry) -> bool:
        return (self.due, self.seq) < (other.due, other.seq)


class TimerHeap[K: Hashable]:
    def __init__(self) -> None:
        self._heap: list[_Entry] = []
        self._live: dict[K, _Entry] = {}
        self._seq = itertools.count()

    def schedule(self, key: K, due: Any) -> None:
        """Set ``key`` to fire at ``due``, replacing any earlier schedule of the same key."""
        self.cancel(key)
        entry = _Entry(due, next(self._seq), key)
        self._live[key] = entry
        heapq.heappush(self._heap, entry)

    reschedule = schedule

    def cancel(self, key: K) -> bool:
        """Forget ``key``; returns whether it was scheduled."""
        entry = self._live.pop(key, None)
        if entry is None:
            return False
        entry.alive = False
        if len(self._heap) > 64 and len(self._heap) > 2 * len(self._live):
            self._compact()
        return True

    def pop_due(self, now: Any) -> list[tuple[K, Any]]:
        """Remove and return every ``(key, due)`` with ``due <= now``, earliest first."""
        fired: list[tuple[K, Any]] = []
        while self._heap and (not self._heap[0].alive or self._heap[0].due <= now):
            entry = heapq.heappop(self._heap)
            if entry.alive:
                del self._live[entry.key]  # type: ignore[arg-type]
                fired.append((entry.key, entry.due))  # type: ignore[arg-type]
        return fired

    def next_deadline(self) -> Any | None:
        """The earliest due time, or None when nothing is scheduled."""
        while self._heap and not self._heap[0].alive:
            heapq.heappop(self._heap)
        return self._heap[0].due if self._heap else None

    def due_of(self, key: K) -> Any | None:
        entry = self._live.get(key)
        return entry.due if entry else None

    def __contains__(self, key: object) -> bool:
        return key in self._live

    def __len__(self) -> int:
        return len(self._live)

    def _compact(self) -> None:
        self._heap = [e for e in self._heap if e.alive]
        heapq.heapify(self._heap)
