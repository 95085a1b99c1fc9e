from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from services.registry import Registry, RegistryError, TaskSpec, UnknownTask, task
from services.schedules import Cron, Every, Schedule


def register(reg: Registry, func: Callable[..., Any], **kwargs: Any) -> TaskSpec:
    task(into=reg, **kwargs)(func)
    spec: TaskSpec = func.task_spec  # type: ignore[attr-defined]
    return spec


def test_defaults_name_description_and_policy() -> None:
    reg = Registry()

    def purge_old_events() -> None:
        """Delete events past retention.

        More detail that is not part of the description.
        """

    spec = register(reg, purge_old_events)
    assert spec.name == "purge_old_events"
    assert spec.description == "Delete events past retention."
    assert spec.schedule is None
    assert spec.func is purge_old_events
    assert (spec.timeout, spec.retries, spec.overlap) == (300.0, 0, "skip")
    assert reg.get("purge_old_events") is spec
    assert reg.names() == ["purge_old_events"]
    assert len(reg) == 1


def test_decorator_returns_the_function_unchanged() -> None:
    reg = Registry()

    def f() -> int:
        return 42

    assert task(into=reg)(f) is f
    assert f() == 42


def test_explicit_name_description_and_coercions() -> None:
    reg = Registry()

    def f() -> None:
        """Docstring line."""

    spec = register(reg, f, name="custom", description="Given", tags=["a", "b"], timeout=5)
    assert spec.name == "custom"
    assert spec.description == "Given"
    assert spec.tags == ("a", "b")
    assert spec.timeout == 5.0 and isinstance(spec.timeout, float)
    assert reg.names() == ["custom"]


def test_no_docstring_means_empty_description() -> None:
    def f() -> None:
        pass

    assert register(Registry(), f).description == ""


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        (None, None),
        ("0 3 * * *", Cron("0 3 * * *")),
        (Cron("*/5 * * * *"), Cron("*/5 * * * *")),
        (Every(1), Every(1)),
    ],
)
def test_schedule_argument(schedule: Schedule | str | None, expected: Schedule | None) -> None:
    def f() -> None:
        pass

    spec = register(Registry(), f, schedule=schedule)
    assert spec.schedule == expected


def test_string_schedule_becomes_cron() -> None:
    def f() -> None:
        pass

    spec = register(Registry(), f, schedule="0 3 * * *")
    assert isinstance(spec.schedule, Cron)
    assert spec.schedule.expr == "0 3 * * *"


def test_duplicate_name_with_another_function_names_both() -> None:
    reg = Registry()

    def first() -> None:
        pass

    def second() -> None:
        pass

    register(reg, first, name="cleanup")
    with pytest.raises(RegistryError) as raised:
        register(reg, second, name="cleanup")
    message = str(raised.value)
    assert "'cleanup'" in message
    assert f"{__name__}.{first.__qualname__}" in message
    assert f"{__name__}.{second.__qualname__}" in message
    assert reg.get("cleanup").func is first  # the first registration stands


def test_same_function_twice_is_fine() -> None:
    reg = Registry()

    def f() -> None:
        pass

    register(reg, f, schedule=Every(1))
    register(reg, f, schedule=Every(1))
    assert len(reg) == 1


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"timeout": 0}, "timeout"),
        ({"timeout": -1.5}, "timeout"),
        ({"retries": -1}, "retries"),
        ({"retry_backoff": 0}, "retry_backoff"),
        ({"retry_backoff": -1}, "retry_backoff"),
        ({"overlap": "queue"}, "overlap"),
        ({"catch_up_grace": -1}, "catch_up_grace"),
    ],
)
def test_bad_arguments_name_the_task(kwargs: dict[str, Any], fragment: str) -> None:
    reg = Registry()

    def nightly() -> None:
        pass

    with pytest.raises(RegistryError) as raised:
        register(reg, nightly, **kwargs)
    assert "'nightly'" in str(raised.value)
    assert fragment in str(raised.value)
    assert len(reg) == 0  # nothing half-registered


@pytest.mark.parametrize("cap", [0, -1])
def test_bad_retry_backoff_cap_names_the_task(cap: float) -> None:
    def nightly() -> None:
        pass

    with pytest.raises(RegistryError, match=r"'nightly'.*retry_backoff_cap"):
        register(Registry(), nightly, retries=3, retry_backoff_cap=cap)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"timeout": 0.001},
        {"retries": 0},
        {"retries": 5},
        {"overlap": "allow"},
        {"catch_up_grace": 0},
    ],
)
def test_boundary_arguments_are_accepted(kwargs: dict[str, Any]) -> None:
    def f() -> None:
        pass

    register(Registry(), f, **kwargs)


@pytest.mark.parametrize("name", ["has space", "tab\there", " lead"])
def test_names_with_whitespace_are_refused(name: str) -> None:
    def f() -> None:
        pass

    with pytest.raises(RegistryError, match="without spaces"):
        register(Registry(), f, name=name)


def _plain() -> None:
    pass


def _slot(slot: object) -> None:
    pass


def _kw_slot(*, slot: object = None) -> None:
    pass


def _var_kwargs(**kwargs: object) -> None:
    pass


def _var_args(*args: object) -> None:
    pass


def _other(when: object) -> None:
    pass


async def _async_slot(slot: object) -> None:
    pass


@pytest.mark.parametrize(
    ("func", "wants_slot", "is_async"),
    [
        (_plain, False, False),
        (_slot, True, False),
        (_kw_slot, True, False),
        (_var_kwargs, True, False),
        (_var_args, False, False),
        (_other, False, False),
        (_async_slot, True, True),
    ],
)
def test_wants_slot_and_is_async(
    func: Callable[..., Any], wants_slot: bool, is_async: bool
) -> None:
    spec = TaskSpec(name="t", func=func, schedule=None)
    assert spec.wants_slot is wants_slot
    assert spec.is_async is is_async


def test_unknown_task_lists_known_names() -> None:
    reg = Registry()
    for name in ["zeta", "alpha"]:
        reg.add(TaskSpec(name=name, func=_plain, schedule=None))
    with pytest.raises(UnknownTask) as raised:
        reg.get("beta")
    assert isinstance(raised.value, LookupError)
    assert raised.value.name == "beta"
    assert raised.value.known == ["alpha", "zeta"]
    assert "'beta'" in str(raised.value)
    assert "alpha, zeta" in str(raised.value)


def test_unknown_task_in_empty_registry() -> None:
    with pytest.raises(UnknownTask, match=r"\(none registered\)"):
        Registry().get("anything")


def test_iteration_is_sorted_by_name() -> None:
    reg = Registry()
    for name in ["b", "c", "a"]:
        reg.add(TaskSpec(name=name, func=_plain, schedule=None))
    assert [spec.name for spec in reg] == ["a", "b", "c"]


def test_problems_lists_invalid_schedules_by_task_name() -> None:
    reg = Registry()

    def every_second() -> None:
        pass

    def nightly() -> None:
        pass

    def broken() -> None:
        pass

    def manual() -> None:
        pass

    register(reg, every_second, schedule=Every(1))
    register(reg, nightly, schedule=Cron("0 3 * * *"))
    register(reg, broken, schedule=Cron("not a cron"))  # registering does not validate
    register(reg, manual)
    problems = reg.problems()
    assert len(problems) == 1
    assert "'broken'" in problems[0]
    assert "not a cron" in problems[0]
    assert reg.get("broken").schedule_problem() is not None
    assert reg.get("nightly").schedule_problem() is None
    assert reg.get("manual").schedule_problem() is None


def test_problems_empty_when_all_valid() -> None:
    reg = Registry()
    register(reg, _plain, schedule=Every(1))
    assert reg.problems() == []


@pytest.mark.parametrize(
    ("enabled_when", "expected"),
    [(None, True), (lambda: True, True), (lambda: False, False), (lambda: 0, False)],
)
def test_is_enabled(enabled_when: Callable[[], Any] | None, expected: bool) -> None:
    spec = TaskSpec(name="t", func=_plain, schedule=None, enabled_when=enabled_when)
    assert spec.is_enabled() is expected


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"enabled_changes": "integrations_config"}, "enabled_changes needs enabled_when"),
        ({"enabled_when": lambda: True, "enabled_changes": "Bad-Channel"}, "must match"),
    ],
)
def test_enabled_changes_is_checked_at_registration(kwargs: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        task(Every(60), into=Registry(), **kwargs)(_plain)


def test_enabled_changes_is_kept_on_the_spec() -> None:
    reg = Registry()
    task(Every(60), into=reg, enabled_when=lambda: True, enabled_changes="integrations_config")(
        _plain
    )
    [spec] = list(reg)
    assert spec.enabled_changes == "integrations_config"
