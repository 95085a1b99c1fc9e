"""Settings that operators change at runtime, stored in the database with code-declared defaults.

Apps declare their settings at import time (``declare("retention.alarm_events_days", 30, ...)``)
and read them with ``get_value``. A row in ``RuntimeSetting`` overrides the default; the admin
validates a value against the declared type before it is saved.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Declared:
    key: str
    default: Any
    description: str
    type: type

    def validate(self, value: Any) -> Any:
        """Return ``value`` if it fits the declared type, else raise ValueError."""
        if self.type is int and isinstance(value, bool):
            raise ValueError(f"{self.key} must be a whole number, got {value!r}")
        if self.type is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if not isinstance(value, self.type):
            raise ValueError(f"{self.key} must be of type {self.type.__name__}, got {value!r}")
        return value


_declared: dict[str, Declared] = {}


def declare(key: str, default: Any, description: str) -> Declared:
    declared = Declared(key, default, description, type(default))
    existing = _declared.get(key)
    if existing is not None and existing != declared:
        raise ValueError(f"runtime setting {key!r} is declared twice with different defaults")
    _declared[key] = declared
    return declared


def declared() -> dict[str, Declared]:
    return dict(_declared)


def get_value(key: str) -> Any:
    """The stored value of a declared setting, or its default. One query."""
    from services.models import RuntimeSetting

    spec = _declared.get(key)
    if spec is None:
        raise KeyError(f"unknown runtime setting {key!r}; known: {', '.join(sorted(_declared))}")
    row = RuntimeSetting.objects.filter(key=key).values_list("value", flat=True).first()
    return spec.default if row is None else spec.validate(row)


def set_value(key: str, value: Any) -> None:
    from services.models import RuntimeSetting

    spec = _declared.get(key)
    if spec is None:
        raise KeyError(f"unknown runtime setting {key!r}")
    RuntimeSetting.objects.update_or_create(key=key, defaults={"value": spec.validate(value)})
