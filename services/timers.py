"""A pure timer heap: schedule / cancel / reschedule by key, pop what is due, next deadline.

No I/O and no clock: callers pass ``now``. Due times may be any mutually comparable values
(aware datetimes in the worker, floats in benchmarks). Operations are O(log n): a cancelled or
rescheduled entry stays in the heap marked dead and is skipped when it surfaces; the heap is
rebuilt when dead entries outnumber live ones, so memory stays proportional to live timers.
Equal due times pop in the order they were scheduled. Entries are tuples the garbage
collector does not track, however many timers are pending.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Hashable
from typing import Any

# One heap entry: (due, seq, key). A plain tuple, not an object: tuples of atomic values are
# untracked by the garbage collector, so 100,000 pending timers add nothing to a full
# collection's pause. ``seq`` breaks ties (schedule order) and keeps keys from being compared.
_Entry = tuple[Any, int, Any]


class TimerHeap[K: Hashable]:
    def __init__(self) -> None:
        self._heap: list[_Entry] = []
        self._live: dict[K, _Entry] = {}  # key -> its current entry (the same tuple object)
        self._seq = itertools.count()

    def schedule(self, key: K, due: Any) -> None:
        """Set ``key`` to fire at ``due``, replacing any earlier schedule of the same key."""
        self.cancel(key)
        entry = (due, next(self._seq), key)
        self._live[key] = entry
        heapq.heappush(self._heap, entry)

    reschedule = schedule

    def cancel(self, key: K) -> bool:
        """Forget ``key``; returns whether it was scheduled."""
        if self._live.pop(key, None) is None:
            return False
        if len(self._heap) > 64 and len(self._heap) > 2 * len(self._live):
            self._compact()
        return True

    def pop_due(self, now: Any) -> list[tuple[K, Any]]:
        """Remove and return every ``(key, due)`` with ``due <= now``, earliest first."""
        fired: list[tuple[K, Any]] = []
        heap, live = self._heap, self._live
        while heap and (live.get(heap[0][2]) is not heap[0] or heap[0][0] <= now):
            entry = heapq.heappop(heap)
            due, _, key = entry
            if live.get(key) is entry:
                del live[key]
                fired.append((key, due))
        return fired

    def next_deadline(self) -> Any | None:
        """The earliest due time, or None when nothing is scheduled."""
        heap, live = self._heap, self._live
        while heap and live.get(heap[0][2]) is not heap[0]:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def due_of(self, key: K) -> Any | None:
        entry = self._live.get(key)
        return entry[0] if entry else None

    def __contains__(self, key: object) -> bool:
        return key in self._live

    def __len__(self) -> int:
        return len(self._live)

    def _compact(self) -> None:
        self._heap = list(self._live.values())
        heapq.heapify(self._heap)
