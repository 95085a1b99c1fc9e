"""Sending one claimed delivery, and deciding what becomes of it: sent, retried or dead.

Permanent failures (a 4xx other than 408/429, a disabled, deleted or misconfigured provider, a
URL the SSRF guard refuses) go to ``dead`` at once with their code; transient ones (timeouts,
connection errors, 5xx, 408, 429) are retried with backoff until ``max_attempts``.

A provider's config is decrypted and validated once per version of the provider row, not once
per delivery: ``ProviderConfigs`` keeps the outcome keyed by everything the claim read of the
provider (its id, type, enabled flag, name and the stored config text), so any change to the
row, by whatever writer, is a new key.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import aiohttp

from notifications import crypto
from notifications.outbox_sql import ClaimedDelivery, Result
from notifications.policy import Failure, classify_exception, next_attempt_delay
from notifications.providers import Provider, get_provider
from notifications.providers.base import Message

logger = logging.getLogger(__name__)

# Providers are few; a bound keeps a worker that outlives many config edits small.
MAX_CACHED_CONFIGS = 256


@dataclass(frozen=True, slots=True)
class ReadyProvider:
    """A provider with its plain, validated config, or why deliveries to it cannot be sent."""

    provider: Provider | None
    config: Mapping[str, Any]
    problem: tuple[str, str] | None = None  # (error code, message)


class ProviderConfigs:
    """Decrypted and validated provider configs, one per provider version seen in claims."""

    def __init__(self, limit: int = MAX_CACHED_CONFIGS) -> None:
        self._limit = limit
        self._ready: dict[tuple[Any, ...], ReadyProvider] = {}
        self.prepared = 0  # cache misses: configs decrypted and validated

    def get(self, delivery: ClaimedDelivery) -> ReadyProvider:
        key = (delivery.provider_id, delivery.provider_type, delivery.provider_enabled,
               delivery.provider_name, delivery.provider_config)  # fmt: skip
        ready = self._ready.get(key)
        if ready is None:
            if len(self._ready) >= self._limit:
                self._ready.clear()
            ready = self._ready[key] = prepare(delivery)
            self.prepared += 1
        return ready


def prepare(delivery: ClaimedDelivery) -> ReadyProvider:
    """The provider of ``delivery`` ready to send: known, enabled, config decrypted and valid."""
    if delivery.provider_type is None:
        return _unready("provider_deleted", "the delivery's provider was deleted")
    if not delivery.provider_enabled:
        return _unready("provider_disabled", f"provider {delivery.provider_name!r} is disabled")
    try:
        provider = get_provider(delivery.provider_type)
    except KeyError as exc:
        return _unready("unknown_provider", str(exc))
    stored = json.loads(delivery.provider_config or "{}")
    if not isinstance(stored, dict):
        return _unready("invalid_config", "config: must be a JSON object")
    try:
        config = crypto.decrypt_fields(stored, provider.secret_fields)
    except crypto.SecretError as exc:
        return _unready("secret_unreadable", str(exc))
    errors = provider.validate(config)
    if errors:
        detail = "; ".join(f"{field}: {error}" for field, error in sorted(errors.items()))
        return _unready("invalid_config", detail)
    return ReadyProvider(provider, config)


def _unready(code: str, message: str) -> ReadyProvider:
    return ReadyProvider(None, {}, (code, message))


async def send_one(
    session: aiohttp.ClientSession | None,
    delivery: ClaimedDelivery,
    now: datetime,
    configs: ProviderConfigs | None = None,
) -> Result:
    if session is None:
        raise RuntimeError("the outbox has no HTTP session")
    ready = configs.get(delivery) if configs is not None else prepare(delivery)
    if ready.provider is None:
        code, problem = ready.problem or ("invalid_config", "unusable provider")
        return _dead(delivery, code, problem)
    message = Message(
        delivery.title, delivery.message, delivery.data, delivery.idempotency_key, delivery.id
    )
    try:
        sent = await ready.provider.send(session, ready.config, message, now, validated=True)
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


def released(delivery: ClaimedDelivery) -> Result:
    """A claimed row whose send never started: pending as before, the attempt not counted."""
    return Result(delivery.id, "pending", "released", delivery.attempt, delivery.provider_id,
                  attempted=False)  # fmt: skip


def _dead(
    delivery: ClaimedDelivery, code: str, message: str, http_status: int | None = None
) -> Result:
    return Result(delivery.id, "dead", "dead", delivery.attempt, delivery.provider_id,
                  error_code=code, error_message=message, http_status=http_status)  # fmt: skip


def log_result(result: Result) -> None:
    if not result.attempted:
        return  # nothing was sent: the row is simply back in the queue
    extra = {"delivery": result.delivery_id, "attempt": result.attempt, "code": result.error_code}
    if result.status == "sent":
        logger.info("notification sent", extra={"event": "outbox.sent", **extra})
    elif result.status == "dead":
        logger.error("notification dead", extra={"event": "outbox.dead", **extra})
    else:
        logger.warning("notification will be retried", extra={"event": "outbox.retry", **extra})
