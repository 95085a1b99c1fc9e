"""list_tasks, task_schedule and run_task against real PostgreSQL, through call_command."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import datetime, timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

import services.registry
from services.manual import parse_kwargs
from services.models import ScheduledJob, TaskRun
from services.registry import Registry, discover, task

TEST_TAG = "test-only"


def echo(n: int = 1, label: str = "x", slot: datetime | None = None) -> dict[str, Any]:
    return {"n": n, "label": label, "slot": slot.isoformat() if slot else None}


def boom() -> None:
    raise ValueError("kaboom")


async def stuck() -> None:
    await asyncio.Event().wait()  # never set: only the timeout ends it


def broken_predicate() -> bool:
    raise RuntimeError("no config")


@pytest.fixture
def tasks(monkeypatch: pytest.MonkeyPatch) -> Registry:
    """The real registry's tasks plus test-only ones, in place of the global registry."""
    registry = Registry()
    for spec in discover():
        registry.add(spec)
    tagged: Any = {"tags": [TEST_TAG], "into": registry}
    task(None, name="t_echo", **tagged)(echo)
    task(None, name="t_boom", **tagged)(boom)
    task(None, name="t_stuck", timeout=0.05, **tagged)(stuck)
    task("0 6 * * *", name="t_off", enabled_when=lambda: False, **tagged)(echo)
    task("0 6 * * *", name="t_error", enabled_when=broken_predicate, **tagged)(echo)
    monkeypatch.setattr(services.registry, "registry", registry)
    return registry


def run(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def rows(listing: str) -> dict[str, list[str]]:
    """list_tasks' table as {name: cells}; cells are separated by two spaces or more."""
    lines = listing.strip().splitlines()[2:]
    return {cells[0]: cells for cells in (re.split(r"\s{2,}", line) for line in lines)}


def running_row(name: str, lease: timedelta) -> TaskRun:
    job, _ = ScheduledJob.objects.get_or_create(name=name)
    now = timezone.now()
    return TaskRun.objects.create(
        job=job,
        source=TaskRun.Source.SCHEDULED,
        slot=now,
        status=TaskRun.Status.RUNNING,
        started_at=now - timedelta(minutes=5),
        lease_until=now + lease,
        worker_id="other-host:1:abc",
    )


# --- list_tasks --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_list_tasks_shows_the_real_tasks_in_the_local_zone(tasks: Registry, settings: Any) -> None:
    settings.TIME_ZONE = "Europe/Paris"
    ScheduledJob.objects.create(name="cleanup_task_runs", paused=True)
    ScheduledJob.objects.create(name="cleanup_expired_sessions", paused=False)

    listing = rows(run("list_tasks")[0])

    assert set(listing) == set(tasks.names())
    _, schedule, enabled, paused, next_run, last, status = listing["cleanup_old_events"]
    assert schedule == "every day at 03:00 (Europe/Paris)"
    assert (enabled, paused, last, status) == ("yes", "not synced", "never", "-")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d 03:00:00 CES?T \(in .+\)", next_run)
    assert listing["cleanup_task_runs"][3:5] == ["yes", "paused"]
    assert listing["cleanup_expired_sessions"][3] == "no"
    assert listing["cleanup_expired_sessions"][4].endswith(")")  # a time, not "paused"


@pytest.mark.django_db
def test_list_tasks_enabled_column_and_manual_only_tasks(tasks: Registry) -> None:
    listing = rows(run("list_tasks")[0])

    assert listing["t_echo"][1:3] == ["manual only", "yes"]
    assert listing["t_echo"][4] == "manual only"
    assert listing["t_off"][2] == "no"
    assert listing["t_error"][2] == "error: RuntimeError: no config"


@pytest.mark.django_db
def test_list_tasks_last_run_is_the_latest_in_two_queries(
    tasks: Registry, django_assert_num_queries: Any
) -> None:
    now = timezone.now()
    for name in ("t_echo", "t_boom", "t_off"):
        job = ScheduledJob.objects.create(name=name)
        for minutes, status in ((90, "success"), (30, "failure"), (60, "success")):
            TaskRun.objects.create(
                job=job, source="manual", status=status, started_at=now - timedelta(minutes=minutes)
            )

    with django_assert_num_queries(2):
        listing = rows(run("list_tasks", "--tag", TEST_TAG)[0])

    assert set(listing) == {"t_echo", "t_boom", "t_stuck", "t_off", "t_error"}
    assert listing["t_boom"][5].endswith("(30m ago)")
    assert listing["t_boom"][6] == "failure"
    assert listing["t_stuck"][5:] == ["never", "-"]


@pytest.mark.django_db
def test_list_tasks_with_an_unknown_tag_names_the_known_ones(tasks: Registry) -> None:
    out, _ = run("list_tasks", "--tag", "nope")

    assert out.strip() == f"no tasks tagged 'nope'; known tags: maintenance, {TEST_TAG}"


# --- task_schedule -----------------------------------------------------------------------------


def test_task_schedule_count_per_task(tasks: Registry) -> None:
    out, _ = run("task_schedule", "--count", "3", "cleanup_old_events", "t_echo")

    first, second = out.strip().split("\n\n")
    assert first.splitlines()[0] == "cleanup_old_events: every day at 03:00 (UTC)"
    fires = first.splitlines()[1:]
    assert len(fires) == 3
    assert all(re.fullmatch(r"  \d{4}-\d\d-\d\d 03:00:00 UTC \(in .+\)", f) for f in fires)
    assert second.splitlines() == [
        "t_echo: manual only",
        "  no schedule: runs only by hand (manage.py run_task)",
    ]


def test_task_schedule_defaults_to_five_for_every_task(tasks: Registry) -> None:
    blocks = run("task_schedule")[0].strip().split("\n\n")

    headings = [block.splitlines()[0].split(":")[0] for block in blocks]
    assert headings == tasks.names()
    scheduled = [b for b in blocks if "manual only" not in b.splitlines()[0]]
    assert {len(b.splitlines()) - 1 for b in scheduled} == {5}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope"], "unknown task 'nope'; known tasks: cleanup_expired_sessions, "),
        (["--count", "0"], "--count must be at least 1, got 0"),
    ],
)
def test_task_schedule_refuses(tasks: Registry, args: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=re.escape(message)):
        run("task_schedule", *args)


# --- run_task: arguments -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        ([], {}),
        (["n=5"], {"n": 5}),
        (["ratio=0.5", "flag=true", "none=null"], {"ratio": 0.5, "flag": True, "none": None}),
        (['quoted="5"'], {"quoted": "5"}),
        (["label=hello world"], {"label": "hello world"}),
        (["eq=a=b"], {"eq": "a=b"}),
        (["empty="], {"empty": ""}),
        (['obj={"a": [1, 2]}'], {"obj": {"a": [1, 2]}}),
    ],
)
def test_parse_kwargs(pairs: list[str], expected: dict[str, Any]) -> None:
    assert parse_kwargs(pairs) == expected


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        (["novalue"], "--arg 'novalue' must be key=value"),
        (["=5"], "--arg '=5' must be key=value"),
        (["two words=1"], "--arg 'two words=1' must be key=value"),
        (["n=1", "n=2"], "--arg 'n' is given twice"),
        (["slot=2025-01-01"], "--arg slot is not accepted"),
    ],
)
def test_parse_kwargs_refuses(pairs: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_kwargs(pairs)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope"], "unknown task 'nope'; known tasks: cleanup_expired_sessions, "),
        (["t_echo", "--arg", "n"], "--arg 'n' must be key=value"),
        (["t_echo", "--arg", "size=3"], "unexpected keyword argument 'size'; it takes: n, label"),
        (["t_boom", "--arg", "n=3"], "it takes: no arguments"),
    ],
)
def test_run_task_refuses_before_recording_a_run(
    tasks: Registry, args: list[str], message: str
) -> None:
    with pytest.raises(CommandError, match=re.escape(message)):
        run("run_task", *args)

    assert not TaskRun.objects.exists()


# --- run_task: runs ----------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_run_task_success_records_a_manual_run(tasks: Registry) -> None:
    other = ScheduledJob.objects.create(name="cleanup_old_events", active=True)
    before = timezone.now()

    out, _ = run("run_task", "t_echo", "--arg", "n=5", "--arg", "label=hello")

    summary, result = out.strip().split("\n", 1)
    run_row = TaskRun.objects.select_related("job").get()
    assert summary.startswith("task t_echo: success in ")
    assert summary.endswith(f"(run {run_row.pk}, 1 attempt)")
    printed = json.loads(result.removeprefix("result: "))
    assert printed["n"] == 5 and printed["label"] == "hello"
    assert datetime.fromisoformat(printed["slot"]) >= before  # a manual run's slot is now
    assert (run_row.job.name, run_row.source, run_row.status) == ("t_echo", "manual", "success")
    assert (run_row.slot, run_row.result, run_row.lease_until) == (None, printed, None)
    assert run_row.job.schedule == "manual only" and run_row.job.active
    other.refresh_from_db()
    assert other.active  # the one-job sync left every other job alone


@pytest.mark.django_db(transaction=True)
def test_run_task_failure_exits_non_zero_and_records_the_traceback(tasks: Registry) -> None:
    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError, match=r"task t_boom failure \(run \d+\)"):
        call_command("run_task", "t_boom", stdout=out, stderr=err)

    run_row = TaskRun.objects.get()
    assert out.getvalue().startswith("task t_boom: failure after ")
    assert "error: ValueError: kaboom" in err.getvalue()
    assert "traceback (last" in err.getvalue()
    assert 'raise ValueError("kaboom")' in err.getvalue()
    assert (run_row.status, run_row.source, run_row.error) == (
        "failure",
        "manual",
        "ValueError: kaboom",
    )
    assert "raise ValueError" in run_row.traceback


@pytest.mark.django_db(transaction=True)
def test_run_task_timeout_exits_non_zero(tasks: Registry) -> None:
    with pytest.raises(CommandError, match=r"task t_stuck timeout"):
        run("run_task", "t_stuck")

    run_row = TaskRun.objects.get()
    assert run_row.status == "timeout"
    assert run_row.error == "timed out after 0.05s (attempt 1)"


@pytest.mark.django_db(transaction=True)
def test_a_live_run_refuses_until_forced(tasks: Registry) -> None:
    live = running_row("t_echo", lease=timedelta(hours=1))
    refusal = (
        f"task 't_echo' is already running (run {live.pk} by other-host:1:abc since "
        f"{live.started_at:%H:%M:%S}); use --force to run anyway"
    )

    with pytest.raises(CommandError, match=re.escape(refusal)):
        run("run_task", "t_echo")
    assert TaskRun.objects.count() == 1

    run("run_task", "t_echo", "--force")

    statuses = dict(TaskRun.objects.values_list("pk", "status"))
    assert statuses.pop(live.pk) == "running"  # the other worker's run is not touched
    assert list(statuses.values()) == ["success"]


@pytest.mark.django_db(transaction=True)
def test_an_expired_run_does_not_block_and_is_closed_as_abandoned(tasks: Registry) -> None:
    dead = running_row("t_echo", lease=timedelta(minutes=-1))

    run("run_task", "t_echo")

    dead.refresh_from_db()
    assert dead.status == "failure" and dead.error.startswith("abandoned")
    assert TaskRun.objects.exclude(pk=dead.pk).get().status == "success"


@pytest.mark.django_db(transaction=True)
def test_a_paused_job_still_runs_by_hand(tasks: Registry) -> None:
    ScheduledJob.objects.create(name="t_echo", paused=True)

    run("run_task", "t_echo")

    assert TaskRun.objects.get().status == "success"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("name", "state"), [("t_off", "no"), ("t_error", "error: RuntimeError: no config")]
)
def test_a_disabled_task_runs_only_when_forced(tasks: Registry, name: str, state: str) -> None:
    refusal = f"task {name!r} is disabled (enabled_when: {state}); use --force to run anyway"
    with pytest.raises(CommandError, match=re.escape(refusal)):
        run("run_task", name)
    assert not TaskRun.objects.exists()

    run("run_task", name, "--force")

    assert TaskRun.objects.get().status == "success"


@pytest.mark.django_db(transaction=True)
def test_an_inactive_job_row_is_reactivated_for_the_run(tasks: Registry) -> None:
    ScheduledJob.objects.create(name="t_echo", active=False, schedule="old")

    run("run_task", "t_echo")

    job = ScheduledJob.objects.get(name="t_echo")
    assert (job.active, job.schedule) == (True, "manual only")
    assert TaskRun.objects.get().status == "success"
