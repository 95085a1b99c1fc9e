"""What the WebSocket clients (Home Assistant, Z-Wave JS) share.

* ``reconnect_delay``: exponential backoff with "equal jitter": half of the delay is fixed,
  so replicas never retry in a burst, the other half spreads them out.
* ``StatusReporter``: forwards only transitions to the status hub's ``report`` callable, and
  never lets a failing ``report`` break a client.
* ``EntityState``: what a client hands to ``on_state``, and ``DeliveredStates``, the
  client's memory of what it handed over, so a resync after a reconnect calls ``on_state``
  only for what changed while away.

No I/O here; the asyncio side is ``ws_client.py``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from services.backoff import exponential

logger = logging.getLogger(__name__)


class Report(Protocol):
    def __call__(
        self,
        integration: str,
        event: str,
        *,
        error: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None: ...


class OnState(Protocol):
    """The alarm app's ``aupdate_entity_state``: returns True when something really changed."""

    async def __call__(
        self,
        entity_id: str,
        state: str,
        attributes: dict[str, Any] | None = None,
        *,
        source: str,
        name: str | None = None,
        at: Any = None,
    ) -> bool: ...


class Malformed(ValueError):
    """A message that does not have the documented shape; ``reason`` is a counter key."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class ServerRefused(Exception):
    """The server answered a command the session needs with an error: reconnect later."""


def reconnect_delay(attempt: int, *, base: float, cap: float, fraction: float) -> float:
    """Delay before reconnect number ``attempt`` (1-based); ``fraction`` in [0, 1)."""
    full = exponential(attempt, base=base, cap=cap)
    return full / 2 + full / 2 * fraction


class StatusReporter:
    """Remembers the last reported (event, error, details); reports only what changed."""

    def __init__(self, integration: str, report: Report) -> None:
        self.integration = integration
        self._report = report
        self.last: tuple[str, str | None, dict[str, Any] | None] | None = None

    @property
    def event(self) -> str | None:
        return self.last[0] if self.last else None

    def __call__(
        self, event: str, *, error: str | None = None, details: dict[str, Any] | None = None
    ) -> None:
        current = (event, error, details)
        if current == self.last:
            return
        self.last = current
        try:
            self._report(self.integration, event, error=error, details=details)
        except Exception:
            # The hub is another component's code: its failure must not cut our connection.
            logger.exception(
                "status report failed",
                extra={"event": f"{self.integration}.report_failed", "status": event},
            )


@dataclass(frozen=True, slots=True)
class EntityState:
    """One entity's state as an integration reports it (``on_state``'s arguments)."""

    entity_id: str
    state: str
    attributes: dict[str, Any]
    name: str | None = None
    last_changed: datetime | None = None  # when the source says it changed, if it says


class DeliveredStates:
    """What ``on_state`` last accepted per entity: (state, attributes).

    ``on_state`` is change-only itself, but each call costs a database read; this spares the
    calls for the thousands of unchanged entities of a resync. An entity whose ``on_state``
    failed is forgotten, so the next resync offers it again.
    """

    def __init__(self) -> None:
        self._states: dict[str, tuple[str, dict[str, Any]]] = {}

    def __len__(self) -> int:
        return len(self._states)

    def is_new(self, entity: EntityState) -> bool:
        return self._states.get(entity.entity_id) != (entity.state, entity.attributes)

    def remember(self, entity: EntityState) -> None:
        self._states[entity.entity_id] = (entity.state, entity.attributes)

    def forget(self, entity_id: str) -> None:
        self._states.pop(entity_id, None)
