"""Counting malformed input (or repeated failures) and logging it at a bounded rate.

A broker can deliver thousands of bad messages a second (a misconfigured device, a fuzzer, a
topic collision). Each is counted by kind; the first of a kind is logged at once, later ones at
most once per ``interval`` seconds per kind, with the number left out since. The counters are
exact, the log stays short, and nothing raises.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from typing import Any


class MalformedLog:
    def __init__(
        self,
        logger: logging.Logger,
        integration: str,
        monotonic: Callable[[], float],
        *,
        interval: float = 60.0,
        event: str = "integrations.malformed",
        what: str = "malformed message",
    ) -> None:
        self._logger = logger
        self._integration = integration
        self.monotonic = monotonic
        self._interval = interval
        self._event = event
        self._what = what
        self.counts: Counter[str] = Counter()
        self._next_log: dict[str, float] = {}
        self._suppressed: Counter[str] = Counter()

    def record(self, kind: str, detail: str, **extra: Any) -> None:
        """Count one malformed message of ``kind``; log it unless logged too recently."""
        self.counts[kind] += 1
        now = self.monotonic()
        if now < self._next_log.get(kind, float("-inf")):
            self._suppressed[kind] += 1
            return
        self._next_log[kind] = now + self._interval
        suppressed, self._suppressed[kind] = self._suppressed[kind], 0
        self._logger.warning(
            "%s: %s (%s): %s",
            self._integration,
            self._what,
            kind,
            detail[:200],
            extra={
                "event": self._event,
                "integration": self._integration,
                "kind": kind,
                "total": self.counts[kind],
                "suppressed": suppressed,
                **extra,
            },
        )

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def as_dict(self) -> dict[str, int]:
        return dict(self.counts)
