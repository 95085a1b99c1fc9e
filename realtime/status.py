"""The status of each integration, and how a reported event changes it. Pure: no I/O, no clock.

An integration reports connection events (``EVENTS``) with the hub's
``report(integration, event, *, error=None, details=None)``: ``configured`` (details may carry
``{"enabled": bool}``), ``unconfigured``, ``connecting``, ``connected``, ``disconnected`` and
``auth_failed`` (``error`` says why), ``available`` / ``unavailable`` (Zigbee2MQTT's bridge,
Frigate). ``details`` are extra fields shown in the payload, never secrets. ``apply`` turns the
current status and one event into the next status and says whether anything changed, so the hub
writes and pushes only real changes. ``system_status_payload`` renders all five in the old
panel's WebSocket shape.

Two kinds of integration are told apart. *Link* integrations (MQTT, Home Assistant, Z-Wave JS)
are online while their connection is up. *Availability* integrations (Zigbee2MQTT, Frigate)
ride on the MQTT transport and are online while their bridge says it is available; until they
report availability at all, their link decides. An integration that is not configured, or
configured but disabled, is neither online nor offline: the offline rule ignores it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

INTEGRATIONS = ("home_assistant", "mqtt", "zwavejs", "zigbee2mqtt", "frigate")
AVAILABILITY_INTEGRATIONS = frozenset({"zigbee2mqtt", "frigate"})
EVENTS = frozenset(
    {
        "configured",
        "unconfigured",
        "connecting",
        "connected",
        "disconnected",
        "auth_failed",
        "available",
        "unavailable",
    }
)
LINK_EVENTS = frozenset({"connecting", "connected", "disconnected", "auth_failed"})
MAX_ERROR_LENGTH = 500

# The payload's main flag per integration, as the old panel named it.
_PRIMARY_FLAG = {
    "home_assistant": "reachable",
    "mqtt": "connected",
    "zwavejs": "connected",
    "zigbee2mqtt": "connected",
    "frigate": "available",
}


class ReportError(ValueError):
    """A report names an unknown integration or event, or carries a wrong type."""


@dataclass(frozen=True)
class IntegrationStatus:
    integration: str
    configured: bool = False
    enabled: bool = False
    # idle (nothing reported since start) | connecting | connected | disconnected | auth_failed
    link: str = "idle"
    available: bool | None = None  # None: availability never reported
    since: datetime | None = None  # when ``state`` took its current value
    last_connect_at: datetime | None = None
    last_disconnect_at: datetime | None = None
    last_error: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def tracked(self) -> bool:
        """Whether the offline rule applies: configured and enabled."""
        return self.configured and self.enabled

    @property
    def online(self) -> bool:
        if not self.tracked:
            return False
        if self.integration in AVAILABILITY_INTEGRATIONS and self.available is not None:
            return self.available and self.link != "disconnected"
        return self.link == "connected"

    @property
    def state(self) -> str:
        """One word for people: unconfigured, disabled, online, connecting, auth_failed, offline."""
        if not self.configured:
            return "unconfigured"
        if not self.enabled:
            return "disabled"
        if self.online:
            return "online"
        if self.link in ("connecting", "auth_failed"):
            return self.link
        return "offline"


@dataclass(frozen=True)
class Transition:
    status: IntegrationStatus
    changed: bool


def initial(integration: str) -> IntegrationStatus:
    check_integration(integration)
    return IntegrationStatus(integration)


def check_integration(integration: object) -> str:
    if not isinstance(integration, str) or integration not in INTEGRATIONS:
        raise ReportError(f"unknown integration {integration!r}; known: {', '.join(INTEGRATIONS)}")
    return integration


def check_report(
    integration: object, event: object, error: object, details: object
) -> tuple[str, str, str | None, dict[str, Any] | None]:
    """Validate a report's arguments; raises ReportError naming what is wrong."""
    check_integration(integration)
    if not isinstance(event, str) or event not in EVENTS:
        raise ReportError(f"unknown event {event!r}; known: {', '.join(sorted(EVENTS))}")
    if error is not None and not isinstance(error, str):
        raise ReportError(f"error must be a string or None, got {type(error).__name__}")
    if details is not None and not isinstance(details, dict):
        raise ReportError(f"details must be a dict or None, got {type(details).__name__}")
    if error is not None and len(error) > MAX_ERROR_LENGTH:
        error = error[: MAX_ERROR_LENGTH - 1] + "…"
    return integration, event, error, details  # type: ignore[return-value]


def apply(
    status: IntegrationStatus,
    event: str,
    *,
    at: datetime,
    error: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> Transition:
    """The status after ``event`` at time ``at``, and whether it differs from ``status``.

    A repeated event (``connected`` while connected) changes nothing, not even a timestamp.
    ``details`` are merged into the known ones; ``unconfigured`` forgets them.
    """
    new = _next(status, event, at=at, error=error, details=details)
    if new.state != status.state:
        new = replace(new, since=at)
    return Transition(new, new != status)


def _next(
    status: IntegrationStatus,
    event: str,
    *,
    at: datetime,
    error: str | None,
    details: Mapping[str, Any] | None,
) -> IntegrationStatus:
    merged = {**status.details, **(details or {})}
    if event == "configured":
        enabled = merged.pop("enabled", True)
        return replace(status, configured=True, enabled=bool(enabled), details=merged)
    if event == "unconfigured":
        return replace(
            status, configured=False, enabled=False, link="idle", available=None, details={}
        )
    if not status.configured:
        # Whoever reports a connection is configured: an integration need not say so first.
        status = replace(status, configured=True, enabled=True)
    if event in LINK_EVENTS:
        return _link(status, event, at=at, error=error, details=merged)
    available = event == "available"
    changes: dict[str, Any] = {"available": available, "details": merged}
    if not available and error is not None:
        changes["last_error"] = error
    return replace(status, **changes)


def _link(
    status: IntegrationStatus,
    event: str,
    *,
    at: datetime,
    error: str | None,
    details: Mapping[str, Any],
) -> IntegrationStatus:
    if event == status.link and (error is None or error == status.last_error):
        return replace(status, details=details)
    changes: dict[str, Any] = {"link": event, "details": details}
    if event == "connected":
        changes["last_connect_at"] = at
    elif event in ("disconnected", "auth_failed"):
        if status.link == "connected":
            changes["last_disconnect_at"] = at
        if status.available is not None:
            changes["available"] = False  # no bridge is available over a dead link
        if error is not None:
            changes["last_error"] = error
    return replace(status, **changes)


def integration_payload(status: IntegrationStatus) -> dict[str, Any]:
    """One integration in the old panel's shape, plus ``state``, ``since`` and ``details``."""
    return {
        "configured": status.configured,
        "enabled": status.enabled,
        _PRIMARY_FLAG[status.integration]: status.online,
        "state": status.state,
        "since": _iso(status.since),
        "last_connect_at": _iso(status.last_connect_at),
        "last_disconnect_at": _iso(status.last_disconnect_at),
        "last_error": status.last_error,
        "details": dict(status.details),
    }


def system_status_payload(statuses: Mapping[str, IntegrationStatus]) -> dict[str, Any]:
    """All five integrations; one never reported shows as not configured."""
    return {
        name: integration_payload(statuses.get(name) or IntegrationStatus(name))
        for name in INTEGRATIONS
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
