"""``manage.py check``: every task imports, names are unique, every schedule is valid."""

from __future__ import annotations

from typing import Any

from django.core.checks import Error, register


@register("services")
def check_tasks(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    from services.registry import RegistryError, discover

    try:
        registry = discover()
    except RegistryError as exc:
        return [Error(str(exc), id="services.E001")]
    return [
        Error(
            f"task {spec.name!r} has an invalid schedule: {spec.schedule_problem()}",
            obj=spec.name,
            id="services.E002",
        )
        for spec in registry
        if spec.schedule_problem()
    ]
