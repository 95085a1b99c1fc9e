"""Task registration: the ``@task`` decorator, discovery of ``<app>.tasks``, validation.

A task is a plain function (sync or async) plus its policy. The registry is the code's view;
``ScheduledJob`` rows are the database's view, synced from here when the worker starts.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from services.listener import validate_channel
from services.schedules import Cron, Schedule, ScheduleError

Overlap = Literal["skip", "allow"]
OVERLAP_POLICIES: tuple[Overlap, ...] = ("skip", "allow")


class RegistryError(ValueError):
    """A task is registered with bad arguments, or twice."""


class UnknownTask(LookupError):
    def __init__(self, name: str, known: list[str]) -> None:
        listing = ", ".join(known) if known else "(none registered)"
        super().__init__(f"unknown task {name!r}; known tasks: {listing}")
        self.name = name
        self.known = known


@dataclass(frozen=True)
class TaskSpec:
    """Everything the worker needs to know about one task."""

    name: str
    func: Callable[..., Any] = field(compare=False)
    schedule: Schedule | None
    description: str = ""
    tags: tuple[str, ...] = ()
    timeout: float = 300.0
    retries: int = 0
    retry_backoff: float = 1.0
    retry_backoff_cap: float = 60.0
    overlap: Overlap = "skip"
    catch_up: bool = True
    catch_up_grace: float = 12 * 3600.0
    enabled_when: Callable[[], bool] | None = field(default=None, compare=False)
    # A NOTIFY channel whose notifications may change what enabled_when says: the cron asks
    # it at start and on each of them, and keeps no slot of the task while it says no.
    enabled_changes: str | None = None

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.func)

    @property
    def wants_slot(self) -> bool:
        params = inspect.signature(self.func).parameters
        return "slot" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())

    def schedule_problem(self) -> str | None:
        """Why this task's schedule is invalid, or None when it is fine."""
        if self.schedule is None:
            return None
        try:
            self.schedule.validate()
        except ScheduleError as exc:
            return str(exc)
        return None

    def is_enabled(self) -> bool:
        return self.enabled_when is None or bool(self.enabled_when())


class Registry:
    def __init__(self) -> None:
        self._tasks: dict[str, TaskSpec] = {}

    def add(self, spec: TaskSpec) -> None:
        existing = self._tasks.get(spec.name)
        if existing is not None and existing.func is not spec.func:
            raise RegistryError(
                f"task {spec.name!r} is registered twice: {_where(existing.func)} and "
                f"{_where(spec.func)}; task names must be unique"
            )
        self._tasks[spec.name] = spec

    def get(self, name: str) -> TaskSpec:
        try:
            return self._tasks[name]
        except KeyError:
            raise UnknownTask(name, self.names()) from None

    def names(self) -> list[str]:
        return sorted(self._tasks)

    def __iter__(self) -> Iterator[TaskSpec]:
        return iter(sorted(self._tasks.values(), key=lambda s: s.name))

    def __len__(self) -> int:
        return len(self._tasks)

    def problems(self) -> list[str]:
        """Every invalid schedule, each naming its task."""
        found = []
        for spec in self:
            problem = spec.schedule_problem()
            if problem:
                found.append(f"task {spec.name!r} has an invalid schedule: {problem}")
        return found


registry = Registry()


def task(
    schedule: Schedule | str | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    tags: tuple[str, ...] | list[str] = (),
    timeout: float = 300.0,
    retries: int = 0,
    retry_backoff: float = 1.0,
    retry_backoff_cap: float = 60.0,
    overlap: Overlap = "skip",
    catch_up: bool = True,
    catch_up_grace: float = 12 * 3600.0,
    enabled_when: Callable[[], bool] | None = None,
    enabled_changes: str | None = None,
    into: Registry | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a function as a task. ``schedule`` may be a Schedule or a cron string.

    A task without a schedule runs only by hand (``manage.py run_task``). The function may
    take a ``slot`` argument to receive the scheduled instant it runs for.

    ``enabled_when`` (a predicate, run on an ORM thread) gates each run. Asked at every slot,
    it costs a wake-up and its query each time even while it says no; with
    ``enabled_changes``, the NOTIFY channel on which what it depends on announces changes,
    it is asked at start and after such a notification, and a disabled task keeps no slot
    at all (no wake-up, no query at idle); an enabled one is still asked as its slot is
    claimed (a change may be on its way), which costs a query only when it runs anyway.
    """

    def register(func: Callable[..., Any]) -> Callable[..., Any]:
        task_name = name or func.__name__
        _check_arguments(
            task_name, timeout, retries, retry_backoff, retry_backoff_cap, overlap, catch_up_grace
        )
        if enabled_changes is not None:
            if enabled_when is None:
                raise ValueError(f"task {task_name!r}: enabled_changes needs enabled_when")
            validate_channel(enabled_changes)
        spec = TaskSpec(
            name=task_name,
            func=func,
            schedule=Cron(schedule) if isinstance(schedule, str) else schedule,
            description=description if description is not None else _first_line(func),
            tags=tuple(tags),
            timeout=float(timeout),
            retries=retries,
            retry_backoff=float(retry_backoff),
            retry_backoff_cap=float(retry_backoff_cap),
            overlap=overlap,
            catch_up=catch_up,
            catch_up_grace=float(catch_up_grace),
            enabled_when=enabled_when,
            enabled_changes=enabled_changes,
        )
        (registry if into is None else into).add(spec)  # an empty Registry is falsy
        func.task_spec = spec  # type: ignore[attr-defined]
        return func

    return register


def _check_arguments(
    name: str,
    timeout: float,
    retries: int,
    backoff: float,
    backoff_cap: float,
    overlap: str,
    grace: float,
) -> None:
    if not name or any(c.isspace() for c in name):
        raise RegistryError(f"task name {name!r} must be non-empty and without spaces")
    if timeout <= 0:
        raise RegistryError(f"task {name!r}: timeout must be > 0 seconds, got {timeout}")
    if retries < 0:
        raise RegistryError(f"task {name!r}: retries must be >= 0, got {retries}")
    if backoff <= 0:
        raise RegistryError(f"task {name!r}: retry_backoff must be > 0, got {backoff}")
    if backoff_cap < backoff:
        raise RegistryError(
            f"task {name!r}: retry_backoff_cap must be >= retry_backoff ({backoff}), "
            f"got {backoff_cap}"
        )
    if overlap not in OVERLAP_POLICIES:
        raise RegistryError(f"task {name!r}: overlap must be one of {OVERLAP_POLICIES}")
    if grace < 0:
        raise RegistryError(f"task {name!r}: catch_up_grace must be >= 0, got {grace}")


def _first_line(func: Callable[..., Any]) -> str:
    doc = inspect.getdoc(func) or ""
    return doc.splitlines()[0] if doc else ""


def _where(func: Callable[..., Any]) -> str:
    return f"{func.__module__}.{func.__qualname__}"


def discover() -> Registry:
    """Import every installed app's ``tasks`` module (and WORKER_TASK_MODULES) to register."""
    from importlib import import_module

    from django.conf import settings
    from django.utils.module_loading import autodiscover_modules

    autodiscover_modules("tasks")
    for module in settings.WORKER_TASK_MODULES:
        import_module(module)
    return registry


def bind_time_zone(spec: TaskSpec, tz: Any) -> TaskSpec:
    """``spec`` with its schedule's missing time zone set to ``tz`` (settings.TIME_ZONE)."""
    if spec.schedule is None:
        return spec
    return replace(spec, schedule=spec.schedule.with_default_tz(tz))
