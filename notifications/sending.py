"""Sending one claimed delivery, and deciding what becomes of it: sent, retried or dead.

Permanent failures (a 4xx other than 408/429, a disabled, deleted or misconfigured provider, a
URL the SSRF guard refuses) go to ``dead`` at once with their code; transient ones (timeouts,
connection errors, 5xx, 408, 429) are retried with backoff until ``max_attempts``.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import aiohttp

from notifications import crypto
from notifications.outbox_sql import ClaimedDelivery, Result
from notifications.policy import Failure, classify_exception, next_attempt_delay
from notifications.providers import get_provider
from notifications.providers.base import Message

logger = logging.getLogger(__name__)


async def send_one(
    session: aiohttp.ClientSession | None, delivery: ClaimedDelivery, now: datetime
) -> Result:
    if session is None:
        raise RuntimeError("the outbox has no HTTP session")
    problem = _unsendable(delivery)
    if problem is not None:
        return _dead(delivery, *problem)
    provider = get_provider(str(delivery.provider_type))
    try:
        config = crypto.decrypt_fields(delivery.provider_config or {}, provider.secret_fields)
    except crypto.SecretError as exc:
        return _dead(delivery, "secret_unreadable", str(exc))
    errors = provider.validate(config)
    if errors:
        detail = "; ".join(f"{field}: {error}" for field, error in sorted(errors.items()))
        return _dead(delivery, "invalid_config", detail)
    message = Message(
        delivery.title, delivery.message, delivery.data, delivery.idempotency_key, delivery.id
    )
    try:
        sent = await provider.send(session, config, message, now)
    except Exception as exc:
        failure = classify_exception(exc, connection_errors=(aiohttp.ClientError,))
        return after_failure(delivery, failure, now)
    if sent.ok:
        return Result(delivery.id, "sent", "sent", delivery.attempt, delivery.provider_id,
                      sent_at=now, http_status=sent.status)  # fmt: skip
    failure = sent.failure or Failure("transient", "unknown", sent.detail, None)
    return after_failure(delivery, failure, now, http_status=sent.status)


def after_failure(
    delivery: ClaimedDelivery, failure: Failure, now: datetime, http_status: int | None = None
) -> Result:
    """Retry a transient failure after its backoff, unless attempts are used up; else dead."""
    if failure.kind == "permanent" or delivery.attempt >= delivery.max_attempts:
        note = (
            "" if failure.kind == "permanent" else f" (gave up after {delivery.attempt} attempts)"
        )
        return _dead(delivery, failure.code, failure.message + note, http_status)
    delay = next_attempt_delay(delivery.attempt, failure, delivery.idempotency_key)
    return Result(delivery.id, "pending", "retry", delivery.attempt, delivery.provider_id,
                  next_attempt_at=now + timedelta(seconds=delay), error_code=failure.code,
                  error_message=failure.message, http_status=http_status)  # fmt: skip


def handed_back(delivery: ClaimedDelivery, now: datetime) -> Result:
    """A send cut by shutdown: pending again, due now, so any worker resends it."""
    return Result(delivery.id, "pending", "retry", delivery.attempt, delivery.provider_id,
                  next_attempt_at=now, error_code="shutdown",
                  error_message="the worker shut down while sending")  # fmt: skip


def _unsendable(delivery: ClaimedDelivery) -> tuple[str, str] | None:
    if delivery.provider_type is None:
        return "provider_deleted", "the delivery's provider was deleted"
    if not delivery.provider_enabled:
        return "provider_disabled", f"provider {delivery.provider_name!r} is disabled"
    try:
        get_provider(delivery.provider_type)
    except KeyError as exc:
        return "unknown_provider", str(exc)
    return None


def _dead(
    delivery: ClaimedDelivery, code: str, message: str, http_status: int | None = None
) -> Result:
    return Result(delivery.id, "dead", "dead", delivery.attempt, delivery.provider_id,
                  error_code=code, error_message=message, http_status=http_status)  # fmt: skip


def log_result(result: Result) -> None:
    extra = {"delivery": result.delivery_id, "attempt": result.attempt, "code": result.error_code}
    if result.status == "sent":
        logger.info("notification sent", extra={"event": "outbox.sent", **extra})
    elif result.status == "dead":
        logger.error("notification dead", extra={"event": "outbox.dead", **extra})
    else:
        logger.warning("notification will be retried", extra={"event": "outbox.retry", **extra})
