"""Log formatting: every line carries its machine key (``extra={"event": ...}``)."""

from __future__ import annotations

import logging

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


class KeyedFormatter(logging.Formatter):
    """Appends ``event=<key>`` and any other ``extra`` fields as ``key=value`` pairs.

    The pairs go right after the message, before any traceback, so one grep finds a line.
    """

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        extras = {k: v for k, v in vars(record).items() if k not in _STANDARD}
        event = extras.pop("event", None)
        pairs = [f"event={event}"] if event else []
        pairs += [f"{k}={v!r}" for k, v in sorted(extras.items())]
        return f"{line} {' '.join(pairs)}" if pairs else line
