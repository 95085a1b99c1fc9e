"""Choosing components, our runworker over channels', and the task system check."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.management import get_commands

from services import checks, registry
from services.registry import Registry, task
from services.schedules import Cron, Every
from services.worker import WorkerError, select


class Named:
    def __init__(self, name: str) -> None:
        self.name = name

    async def run(self, stopping: Any) -> None: ...

    def health(self) -> dict[str, Any]:
        return {}


AVAILABLE: dict[str, Any] = {n: Named(n) for n in ("cron", "outbox", "timers")}


@pytest.mark.parametrize(
    ("only", "exclude", "expected"),
    [
        ((), (), ["cron", "outbox", "timers"]),
        (("cron",), (), ["cron"]),
        (("cron", "timers"), (), ["cron", "timers"]),
        ((), ("outbox",), ["cron", "timers"]),
        (("cron", "outbox"), ("outbox",), ["cron"]),
    ],
)
def test_select_components(
    only: tuple[str, ...], exclude: tuple[str, ...], expected: list[str]
) -> None:
    assert [c.name for c in select(AVAILABLE, only, exclude)] == expected


@pytest.mark.parametrize(
    ("only", "exclude", "message"),
    [
        (("crom",), (), "unknown component(s): crom; available: cron, outbox, timers"),
        ((), ("nope",), "unknown component(s): nope"),
        (("cron",), ("cron",), "no component left to run"),
    ],
)
def test_select_refuses_bad_names(
    only: tuple[str, ...], exclude: tuple[str, ...], message: str
) -> None:
    with pytest.raises(WorkerError, match=message.replace("(", r"\(").replace(")", r"\)")):
        select(AVAILABLE, only, exclude)


def test_our_runworker_shadows_channels_one() -> None:
    assert get_commands()["runworker"] == "services"


def test_check_names_the_task_with_an_invalid_schedule(monkeypatch: pytest.MonkeyPatch) -> None:
    fresh = Registry()
    task(Cron("61 * * * *"), name="broken_minute", into=fresh)(lambda: None)
    task(Every(5), name="fine", into=fresh)(lambda: None)
    monkeypatch.setattr(registry, "registry", fresh)
    errors = checks.check_tasks()
    assert [(e.id, e.obj) for e in errors] == [("services.E002", "broken_minute")]
    assert "'broken_minute' has an invalid schedule" in errors[0].msg
    assert "61" in errors[0].msg


def test_check_is_clean_for_the_real_tasks() -> None:
    assert checks.check_tasks() == []


def test_singleton_makes_one_object_per_key() -> None:
    from services.worker import WorkerContext

    ctx = WorkerContext("w", None, None, None, None, [])  # type: ignore[arg-type]
    made: list[object] = []

    def factory() -> object:
        made.append(object())
        return made[-1]

    first = ctx.singleton("hub", factory)
    assert ctx.singleton("hub", factory) is first
    assert ctx.singleton("other", factory) is not first
    assert len(made) == 2
