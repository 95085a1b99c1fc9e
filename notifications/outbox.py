"""Enqueue notifications: one row in the outbox table; a trigger wakes the worker on commit.

``enqueue(provider, message, ...)`` (and ``await aenqueue(...)``) validates its arguments, writes
a pending ``NotificationDelivery`` and returns it. Nothing is sent here: the worker is notified
when the surrounding transaction commits (so a rolled-back enqueue sends nothing) and sends the
row as soon as ``next_attempt_at`` (``send_after``, default now) is reached.

With an ``idempotency_key`` the first enqueue wins: a repeat, even a concurrent one from another
thread or process, returns the existing delivery (whatever its status) and creates no row; the
arguments of the repeat are ignored. The key also travels with every request the worker makes
(``Idempotency-Key`` for webhooks) so a receiver can drop the repeats of at-least-once delivery.

enqueue_sql_example::

    INSERT INTO notifications_notificationdelivery
        (provider_id, title, message, data, status, attempts, max_attempts, next_attempt_at,
         locked_by, last_error_code, last_error_message, idempotency_key, created_at, updated_at)
    SELECT id, 'Back door', 'The back door opened', '{"zone": "back"}', 'pending', 0, 5, now(),
           '', '', '', 'sql-example-back-door', now(), now()
    FROM notifications_notificationprovider WHERE name = 'phone'
    ON CONFLICT (idempotency_key) DO NOTHING

Plain SQL from any client works the same: the trigger, not this module, wakes the worker. Every
column must be given (Django keeps defaults in Python, not in the table); the ``ON CONFLICT``
clause makes it idempotent like ``enqueue``.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

from asgiref.sync import sync_to_async
from django.utils import timezone

from notifications.models import NotificationDelivery, NotificationProvider

logger = logging.getLogger(__name__)

MAX_ATTEMPTS_RANGE = range(1, 101)
TITLE_MAX_LENGTH = NotificationDelivery._meta.get_field("title").max_length or 300
KEY_MAX_LENGTH = NotificationDelivery._meta.get_field("idempotency_key").max_length or 200


def enqueue(
    provider: NotificationProvider | str,
    message: str,
    *,
    title: str = "",
    data: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
    send_after: datetime | None = None,
    max_attempts: int = 5,
) -> NotificationDelivery:
    """Write a pending delivery of ``message`` to ``provider`` (an instance or its name).

    Raises ValueError for bad arguments or an unknown provider name, before writing anything.
    """
    target = _resolve_provider(provider)
    _validate(message, title, data, idempotency_key, send_after, max_attempts)
    fields = {
        "provider": target,
        "title": title,
        "message": message,
        "data": data or {},
        "max_attempts": max_attempts,
        "next_attempt_at": send_after or timezone.now(),
    }
    if idempotency_key is None:
        delivery, created = NotificationDelivery.objects.create(**fields), True
    else:
        # get_or_create inserts in a savepoint and, when a concurrent insert of the same key
        # wins (IntegrityError on the unique index), reads that row back instead.
        delivery, created = NotificationDelivery.objects.get_or_create(
            idempotency_key=idempotency_key, defaults=fields
        )
    logger.debug(
        "%s delivery %s to %s",
        "enqueued" if created else "already enqueued",
        delivery.pk,
        target.name,
        extra={
            "event": "notifications.enqueued" if created else "notifications.enqueue_repeat",
            "delivery_id": delivery.pk,
            "provider": target.name,
        },
    )
    return delivery


async def aenqueue(
    provider: NotificationProvider | str,
    message: str,
    *,
    title: str = "",
    data: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
    send_after: datetime | None = None,
    max_attempts: int = 5,
) -> NotificationDelivery:
    """``enqueue`` for async code (runs it in Django's sync thread)."""
    return await sync_to_async(enqueue)(
        provider,
        message,
        title=title,
        data=data,
        idempotency_key=idempotency_key,
        send_after=send_after,
        max_attempts=max_attempts,
    )


def _resolve_provider(provider: NotificationProvider | str) -> NotificationProvider:
    if isinstance(provider, NotificationProvider):
        if provider.pk is None:
            raise ValueError(f"provider {provider.name!r} is not saved yet")
        return provider
    if not isinstance(provider, str):
        raise ValueError(f"provider must be a NotificationProvider or its name, got {provider!r}")
    found = NotificationProvider.objects.filter(name=provider).first()
    if found is None:
        known = list(NotificationProvider.objects.order_by("name").values_list("name", flat=True))
        listing = ", ".join(known) or "(none configured)"
        raise ValueError(f"unknown notification provider {provider!r}; known: {listing}")
    return found


def _validate(
    message: str,
    title: str,
    data: dict[str, Any] | None,
    idempotency_key: str | None,
    send_after: datetime | None,
    max_attempts: int,
) -> None:
    if not isinstance(message, str) or not message.strip():
        raise ValueError("message must be non-empty text")
    if not isinstance(title, str) or len(title) > TITLE_MAX_LENGTH:
        raise ValueError(f"title must be text of at most {TITLE_MAX_LENGTH} characters")
    _validate_data(data)
    if idempotency_key is not None and (
        not isinstance(idempotency_key, str) or not 0 < len(idempotency_key) <= KEY_MAX_LENGTH
    ):
        raise ValueError(f"idempotency_key must be 1 to {KEY_MAX_LENGTH} characters of text")
    if send_after is not None and (
        not isinstance(send_after, datetime) or timezone.is_naive(send_after)
    ):
        raise ValueError(f"send_after must be a timezone-aware datetime, got {send_after!r}")
    if isinstance(max_attempts, bool) or not isinstance(max_attempts, int):
        raise ValueError(f"max_attempts must be a whole number, got {max_attempts!r}")
    if max_attempts not in MAX_ATTEMPTS_RANGE:
        raise ValueError(f"max_attempts must be between 1 and 100, got {max_attempts}")


def _validate_data(data: dict[str, Any] | None) -> None:
    if data is None:
        return
    if not isinstance(data, dict):
        raise ValueError(f"data must be a dict, got {type(data).__name__}")
    try:
        json.dumps(data)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"data must be JSON-serializable: {exc}") from exc
