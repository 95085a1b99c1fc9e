"""Pure helpers shared by the MQTT layers' parsers: the Malformed error and JSON decoding."""

from __future__ import annotations

import json
from typing import Any


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
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise Malformed("bad_json", f"{type(exc).__name__}: {str(exc)[:80]}") from None
