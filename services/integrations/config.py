"""An integration's effective configuration: its row (decrypted), else its environment default.

``load(kind)`` is a plain ORM function (one query) that the worker calls on its ORM thread when
a component starts, on every NOTIFY of ``integrations_config`` naming the kind, and after every
reconnect of the LISTEN connection. Precedence per field, lowest first: the field's declared
default, the environment default (MQTT: ``MQTT_URL``, or the embedded broker when that is
unset), then the row's non-empty values. ``enabled`` comes from the row (True without one).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings

from notifications.crypto import SecretError
from services.integrations.config_spec import EMBEDDED_URL, EffectiveConfig, spec_for

CHANNEL = "integrations_config"  # NOTIFY'd with the kind by a trigger on every row change


def _mqtt_environment() -> dict[str, Any] | None:
    if settings.MQTT_URL:
        return {"url": settings.MQTT_URL}
    if getattr(settings, "EMBEDDED_MQTT", False):
        return {"url": EMBEDDED_URL}
    return None


# Kind -> the values the environment supplies (None: nothing). Other kinds may add theirs.
ENVIRONMENT_DEFAULTS: dict[str, Callable[[], dict[str, Any] | None]] = {
    "mqtt": _mqtt_environment,
}


def load(kind: str) -> EffectiveConfig:
    """The configuration ``kind`` runs with now. One query; never raises for a bad row."""
    from services.integrations.models import IntegrationConfig

    spec = spec_for(kind)
    row = IntegrationConfig.objects.filter(kind=kind).first()
    environment = ENVIRONMENT_DEFAULTS.get(kind, lambda: None)()
    base = {**spec.defaults(), **(environment or {})}
    if row is None:
        if environment is None:
            return EffectiveConfig(kind, configured=False, enabled=False, values=base)
        return EffectiveConfig(kind, True, True, base, source="environment")
    try:
        plain = row.plain_settings()
    except (SecretError, ValueError) as exc:
        return EffectiveConfig(kind, True, row.enabled, base, source="row", error=str(exc))
    errors = spec.validate(plain)
    values = {**base, **{k: v for k, v in plain.items() if v not in (None, "")}}
    error = "; ".join(f"{k}: {v}" for k, v in sorted(errors.items())) or None
    return EffectiveConfig(kind, True, row.enabled, values, source="row", error=error)
