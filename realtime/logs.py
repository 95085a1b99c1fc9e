"""Logging at a bounded rate: a repeated failure is one line a minute per key, with a count."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any


class BoundedLog:
    def __init__(self, logger: logging.Logger, every: float = 60.0) -> None:
        self.logger, self.every = logger, every
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, event: str, text: str, **fields: Any) -> bool:
        """Log unless ``event`` was logged less than ``every`` s ago; returns whether it did."""
        now = time.monotonic()
        with self._lock:
            if now - self._last.get(event, -self.every) < self.every:
                self._suppressed[event] = self._suppressed.get(event, 0) + 1
                return False
            self._last[event] = now
            suppressed = self._suppressed.pop(event, 0)
        extra = {"event": event, **fields}
        if suppressed:
            extra["suppressed"] = suppressed
        self.logger.warning(text, extra=extra)
        return True
