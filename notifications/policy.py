"""What a send attempt's outcome means: retry (and when) or give up.

Pure: no Django, no aiohttp, no clock of its own (callers pass ``now``). The providers turn
HTTP answers and exceptions into a :class:`Failure`; the dispatcher turns a failure plus the
attempt number into "dead now" or "retry after ``next_attempt_delay`` seconds".
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Literal

from services.backoff import exponential, stable_fraction

FailureKind = Literal["transient", "permanent"]

RATE_LIMITED = "rate_limited"
MAX_RETRY_AFTER = 3600.0
# Enough of an error body to tell what went wrong, small enough for a log row.
MAX_MESSAGE_CHARS = 300

_DELAY_SECONDS = re.compile(r"-?\d+(\.\d+)?")


@dataclass(frozen=True, slots=True)
class Failure:
    kind: FailureKind
    code: str
    message: str
    retry_after: float | None = None

    @property
    def transient(self) -> bool:
        return self.kind == "transient"


class PermanentError(Exception):
    """An error that retrying cannot fix; ``code`` is what the delivery is dead-lettered with.

    Defined here (not next to its users) so that this module can recognise SSRF refusals and
    invalid configurations without importing the modules that raise them.
    """

    code = "permanent_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class InvalidConfig(PermanentError):
    code = "invalid_config"


def classify_status(
    status: int, body_text: str, headers: Mapping[str, str], now: datetime
) -> Failure | None:
    """None for success (2xx); otherwise what kind of failure the answer is."""
    if 200 <= status < 300:
        return None
    message = f"HTTP {status}: {body_text.strip()[:MAX_MESSAGE_CHARS]}".rstrip(": ")
    if status == 429:
        retry_after = parse_retry_after(_header(headers, "Retry-After"), now)
        return Failure("transient", RATE_LIMITED, message, retry_after)
    if status == 408 or 500 <= status < 600:
        # 503 often carries Retry-After too; honouring it costs nothing.
        retry_after = parse_retry_after(_header(headers, "Retry-After"), now)
        return Failure("transient", f"http_{status}", message, retry_after)
    # Other 4xx: the request itself is wrong (auth, URL, payload); the old scheduler retried
    # these and hammered providers for nothing. 1xx/3xx land here too: redirects are not
    # followed (a moved endpoint needs a config change, and following would bypass the
    # SSRF guard's view of where we send), so they cannot succeed on retry either.
    return Failure("permanent", f"http_{status}", message)


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait per a ``Retry-After`` header (delay-seconds or HTTP-date), or None.

    Clamped to [0, MAX_RETRY_AFTER]: a past date or a negative number means "now", and a
    provider cannot park a delivery for days. Garbage is ignored (None), not an error.
    """
    if value is None:
        return None
    text = value.strip()
    if _DELAY_SECONDS.fullmatch(text):
        return _clamp(float(text))
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    return _clamp((_aware(when) - _aware(now)).total_seconds())


def classify_exception(
    exc: BaseException, *, connection_errors: tuple[type[BaseException], ...] = ()
) -> Failure:
    """Classify an exception raised while sending.

    ``connection_errors`` lets the HTTP layer name its own connection error types (aiohttp's
    are not all OSErrors) without this module importing it.
    """
    permanent = _find_in_chain(exc, PermanentError)
    if isinstance(permanent, PermanentError):
        return Failure("permanent", permanent.code, str(permanent))
    message = _describe(exc)
    if isinstance(exc, TimeoutError):
        return Failure("transient", "timeout", message)
    if isinstance(exc, (OSError, *connection_errors)):
        return Failure("transient", "connection_error", message)
    # Unknown: retry. A bug or an odd library condition is as likely to be passing as not;
    # retries are bounded by max_attempts, so the delivery still ends dead (with this message)
    # if it persists, while calling it permanent would drop a message over one glitch.
    return Failure("transient", "unexpected", message)


def next_attempt_delay(
    attempt: int,
    failure: Failure,
    key: str,
    *,
    base: float = 5.0,
    cap: float = 600.0,
    rate_limited_base: float = 30.0,
    jitter: float = 1.0,
) -> float:
    """Seconds before the retry that follows failed attempt number ``attempt`` (1-based).

    min(base * 2**(attempt-1), cap) plus jitter in [0, jitter) that is a pure function of
    (key, attempt), so every worker computes the same time; never below ``retry_after``.
    """
    chosen_base = rate_limited_base if failure.code == RATE_LIMITED else base
    delay = exponential(attempt, base=chosen_base, cap=cap)
    delay += stable_fraction(key, attempt) * jitter
    if failure.retry_after is not None:
        delay = max(delay, failure.retry_after)
    return delay


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive lookup that also works on plain dicts (aiohttp's is already CI)."""
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    return next((v for k, v in headers.items() if k.lower() == lowered), None)


def _clamp(seconds: float) -> float | None:
    if math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def _aware(moment: datetime) -> datetime:
    # HTTP-dates are GMT by definition; parsedate_to_datetime returns naive for "-0000".
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _find_in_chain(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    """``exc`` or an exception it was raised from / during, if one is a ``kind``.

    HTTP libraries wrap errors raised inside their hooks (our SSRF resolver among them).
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _describe(exc: BaseException) -> str:
    text = str(exc)
    name = type(exc).__name__
    return (f"{name}: {text}" if text else name)[:MAX_MESSAGE_CHARS]
