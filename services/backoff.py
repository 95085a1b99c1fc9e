"""Pure backoff arithmetic shared by the supervisor, task retries and (later) the outbox."""

from __future__ import annotations

import hashlib


def exponential(attempt: int, *, base: float, cap: float) -> float:
    """Delay before retry number ``attempt`` (1-based): base, 2*base, 4*base, ... capped at cap."""
    if attempt < 1:
        raise ValueError(f"attempt is 1-based, got {attempt}")
    # 2 ** 64 is already far past any cap; bounding the exponent avoids an OverflowError.
    return min(base * 2 ** min(attempt - 1, 64), cap)


def stable_fraction(*parts: object) -> float:
    """A number in [0, 1) derived from ``parts``: the same on every process and every run.

    Jitter built on it spreads work out without making replicas disagree about it.
    """
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64
