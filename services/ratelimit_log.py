"""Counting repeated problems exactly and logging them at a bounded rate.

A broker can deliver thousands of bad messages a second (a misconfigured device, a fuzzer, a
topic collision), a database outage fails every write, a Redis outage every push. Each
occurrence is counted by kind, exactly: the counters are what ``/healthz`` shows. The log
gets the first occurrence of a key at once and later ones at most once per ``every`` seconds
per key; each line carries how many of its key were left out since the one before
(``suppressed``). So a flood costs a counter increment, not a log line each.

The window key is the kind, or, with ``per_kind=False``, one key for the whole log: a flood
of mixed kinds is then still one line per ``every`` seconds (the WebSocket clients' fuzzed
frames), where per kind it would be one line per kind.

Every line carries its machine key, ``extra={"event": ...}``: the log's ``event``, or the
kind itself when the log has none (realtime keeps one log for several events). The other
fields and their names are the callers' (``FieldNames``): dashboards and tests grep for the
names each line has always had, so a caller keeps its own.

Pure: no Django, no asyncio, no I/O but the logging call. Thread-safe: realtime's module-level
logs are shared by the event loop and the threads its ORM reads run on. The clock is
injectable, so tests step a fake one instead of sleeping.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

DETAIL_LIMIT = 200  # characters of a detail kept: a detail may echo a whole bad payload


@dataclass(frozen=True, slots=True)
class FieldNames:
    """Under which ``extra`` names a line carries its numbers and strings; None leaves one out.

    ``kind``: the kind counted; ``detail``: the detail (cut to ``DETAIL_LIMIT``);
    ``suppressed``: how many of this window's key were not logged since its last line;
    ``total``: how many of the key were counted so far (of the kind, or of all kinds with
    ``per_kind=False``).
    """

    kind: str | None = None
    detail: str | None = None
    suppressed: str = "suppressed"
    total: str | None = None


PLAIN = FieldNames()  # the event, the caller's fields and ``suppressed``: realtime's lines


class RateLimitedLog:
    """Exact counts per kind; one warning per key at once, then per ``every`` seconds at most.

    ``message`` is a %-template over the line's fields plus ``kind`` and ``detail``, formatted
    by logging only when the line is emitted; ``fields`` are constant fields of every line.
    """

    def __init__(
        self,
        logger: logging.Logger,
        event: str | None = None,
        message: str = "%(detail)s",
        *,
        every: float = 60.0,
        monotonic: Callable[[], float] = time.monotonic,
        per_kind: bool = True,
        fields: Mapping[str, Any] | None = None,
        names: FieldNames = PLAIN,
    ) -> None:
        self.logger = logger
        self.event = event
        self.message = message
        self.every = every
        self.monotonic = monotonic  # public: a log made for the same component shares it
        self.per_kind = per_kind
        self.fields = dict(fields or {})
        self.names = names
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._logged_at: dict[str, float] = {}  # per window key; absent: never logged
        self._suppressed: Counter[str] = Counter()

    def record(
        self,
        kind: str,
        detail: str = "",
        /,
        *,
        exc_info: BaseException | None = None,
        **fields: Any,
    ) -> bool:
        """Count one ``kind``; log it unless its key was logged less than ``every`` s ago.

        Returns whether a line was written. ``kind`` and ``detail`` are positional-only, so
        ``fields`` may use those names too.
        """
        key = kind if self.per_kind else ""
        now = self.monotonic()
        with self._lock:
            self._counts[kind] += 1
            last = self._logged_at.get(key)
            if last is not None and now - last < self.every:
                self._suppressed[key] += 1
                return False
            self._logged_at[key] = now
            suppressed = self._suppressed.pop(key, 0)
            total = self._counts[kind] if self.per_kind else self._counts.total()
        # The line is written outside the lock: a slow handler must not stall other threads.
        self._write(kind, detail[:DETAIL_LIMIT], suppressed, total, exc_info, fields)
        return True

    def _write(
        self,
        kind: str,
        detail: str,
        suppressed: int,
        total: int,
        exc_info: BaseException | None,
        fields: dict[str, Any],
    ) -> None:
        names = self.names
        extra: dict[str, Any] = dict(self.fields)
        if names.kind:
            extra[names.kind] = kind
        if names.detail:
            extra[names.detail] = detail
        extra.update(fields)
        # The machine key and the numbers last: a caller's field cannot hide them.
        extra["event"] = self.event or kind
        extra[names.suppressed] = suppressed
        if names.total:
            extra[names.total] = total
        self.logger.warning(
            self.message, {**extra, "kind": kind, "detail": detail}, extra=extra, exc_info=exc_info
        )

    @property
    def counts(self) -> Counter[str]:
        """A copy: the live counter may grow in another thread while the caller iterates."""
        with self._lock:
            return self._counts.copy()

    @property
    def total(self) -> int:
        with self._lock:
            return self._counts.total()

    def as_dict(self) -> dict[str, int]:
        """The counts per kind, for ``/healthz``."""
        with self._lock:
            return dict(self._counts)
