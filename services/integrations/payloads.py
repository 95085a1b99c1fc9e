"""Pure helpers shared by the MQTT layers: the Malformed error, the log that counts what they
cannot use, and JSON decoding (only what the database can store: UTF-8 without NUL or lone
surrogates)."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from typing import Any

from services.ratelimit_log import FieldNames, RateLimitedLog

# JSON escapes the database cannot store: NUL (PostgreSQL text and jsonb refuse it) and UTF-16
# surrogates, which are fine in pairs (emoji) but not alone (no UTF-8 encoding exists).
_NUL_ESCAPE = "\\u0000"
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


# What every line of ``malformed_log`` carries besides the caller's fields (``topic``, ...);
# ``/healthz`` has the counts, the README documents ``event=integrations.malformed``.
_NAMES = FieldNames(kind="kind", total="total")


def malformed_log(
    logger: logging.Logger,
    integration: str,
    monotonic: Callable[[], float],
    *,
    event: str = "integrations.malformed",
    what: str = "malformed message",
) -> RateLimitedLog:
    """The counter of an MQTT layer's unusable input: one line per kind a minute at most.

    A line reads ``<integration>: <what> (<kind>): <detail>``; ``event`` and ``what`` are
    for the sink's failed deliveries, counted and logged the same way.
    """
    return RateLimitedLog(
        logger, event, f"%(integration)s: {what} (%(kind)s): %(detail)s",
        monotonic=monotonic, fields={"integration": integration}, names=_NAMES,
    )  # fmt: skip


class Malformed(ValueError):
    """A message that cannot be used; ``kind`` is what the counters count it as."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


def decode_json(payload: bytes) -> Any:
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise Malformed("bad_encoding", "payload is not UTF-8") from None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise Malformed("bad_json", f"{type(exc).__name__}: {str(exc)[:80]}") from None
    if _NUL_ESCAPE in text:
        raise Malformed("bad_encoding", "a NUL character (\\u0000) in the JSON")
    if _SURROGATE_ESCAPE.search(text):
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise Malformed("bad_encoding", "a lone UTF-16 surrogate in the JSON") from None
    return value
