"""``task_run_changed``: every writer of what the status page shows announces it, on commit."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import transaction
from django.test import Client
from django.urls import reverse

from services import run_signals, store
from services.claims import ClaimRequest, claim_runs
from services.manual import ensure_job
from services.models import ScheduledJob, TaskRun
from services.registry import Registry, bind_time_zone, task
from services.schedules import Every
from services.tasks import cleanup_task_runs

pytestmark = pytest.mark.django_db

NOW = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)
LEASE = NOW + timedelta(seconds=30)
Announced = list[tuple[str, tuple[str, ...]]]


@pytest.fixture
def announced() -> Iterator[Announced]:
    calls: Announced = []

    def record(sender: Any = None, *, reason: str, jobs: tuple[str, ...], **_: Any) -> None:
        calls.append((reason, jobs))

    run_signals.task_run_changed.connect(record, weak=False, dispatch_uid="test-recorder")
    yield calls
    run_signals.task_run_changed.disconnect(dispatch_uid="test-recorder")


def job(name: str = "a", **fields: Any) -> ScheduledJob:
    return ScheduledJob.objects.create(name=name, **fields)


def running(name: str = "a", **fields: Any) -> TaskRun:
    values = {"source": "manual", "worker_id": "w1", "status": "running", "started_at": NOW}
    return TaskRun.objects.create(job=job(name), **{**values, **fields})


def claim(name: str = "a", slot: datetime | None = NOW) -> list[Any]:
    return claim_runs(
        [ClaimRequest(name, slot, "scheduled", next_run_at=NOW + timedelta(minutes=1))],
        worker_id="w1",
        now=NOW,
        lease_until=LEASE,
    )


def spec(name: str = "a") -> Any:
    registry = Registry()

    @task(Every(60), name=name, into=registry)
    def task_a() -> None: ...

    return bind_time_zone(registry.get(name), UTC)


WRITES: list[tuple[str, Callable[[], Any], tuple[str, tuple[str, ...]]]] = [
    ("a claim", lambda: (job(), claim()), ("claimed", ("a",))),
    ("a run's outcome", lambda: store.finish_run(
        running().pk, status="success", now=NOW, attempt=1), ("finished", ())),
    ("a retry", lambda: store.set_attempt(running().pk, 2, "boom"), ("retrying", ())),
    ("abandoned runs", lambda: (running(lease_until=NOW - timedelta(seconds=1)),
                                store.recover_abandoned(NOW)), ("abandoned", ())),
    ("the job sync", lambda: store.sync_jobs([spec()], NOW), ("synced", ("a",))),
    ("a manual run's new job", lambda: ensure_job(spec(), NOW), ("synced", ("a",))),
]  # fmt: skip


@pytest.mark.parametrize(("write", "expected"), [w[1:] for w in WRITES], ids=[w[0] for w in WRITES])
def test_each_writer_announces_after_commit(
    write: Callable[[], Any],
    expected: tuple[str, tuple[str, ...]],
    announced: Announced,
    django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        write()
        assert announced == []  # not before the commit
    assert announced == [expected]


def test_what_changes_nothing_announces_nothing(
    announced: Announced, django_capture_on_commit_callbacks: Any
) -> None:
    store.sync_jobs([spec()], NOW)
    claim()
    run = TaskRun.objects.get()
    store.finish_run(run.pk, status="success", now=NOW, attempt=1)
    with django_capture_on_commit_callbacks(execute=True):
        store.sync_jobs([spec()], NOW)  # the rows already match the registry
        claim()  # the slot is taken, next_run_at moves: that one is a change
        store.finish_run(run.pk, status="failure", now=NOW, attempt=1)  # no longer running
        store.recover_abandoned(NOW)
        ensure_job(spec(), NOW)
    assert announced == [("claimed", ("a",))]


def test_a_rolled_back_change_announces_nothing(
    announced: Announced, django_capture_on_commit_callbacks: Any
) -> None:
    run = running()
    with (
        django_capture_on_commit_callbacks(execute=True),
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        store.finish_run(run.pk, status="success", now=NOW, attempt=1)
        raise RuntimeError("rolled back")
    assert announced == []


def test_a_failing_receiver_never_reaches_the_writer(
    announced: Announced, django_capture_on_commit_callbacks: Any
) -> None:
    def broken(**_: Any) -> None:
        raise ValueError("receiver bug")

    run_signals.task_run_changed.connect(broken, weak=False, dispatch_uid="test-broken")
    try:
        with django_capture_on_commit_callbacks(execute=True):
            assert store.finish_run(running().pk, status="success", now=NOW, attempt=1)
    finally:
        run_signals.task_run_changed.disconnect(dispatch_uid="test-broken")
    assert announced == [("finished", ())]


def test_an_unknown_reason_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown reason 'polled'"):
        run_signals.announce("polled")


def test_the_cleanup_announces_deleted_runs(
    announced: Announced, django_capture_on_commit_callbacks: Any
) -> None:
    old = running(status="success", started_at=NOW - timedelta(days=400))
    with django_capture_on_commit_callbacks(execute=True):
        cleanup_task_runs(slot=NOW)
    assert not TaskRun.objects.filter(pk=old.pk).exists()
    assert announced == [("deleted", ())]


@pytest.fixture
def admin_client(client: Client, django_user_model: Any) -> Client:
    admin = django_user_model.objects.create_superuser("admin", "admin@example.com", None)
    client.force_login(admin)
    return client


def test_the_admin_announces_pause_resume_and_edits(
    admin_client: Client, announced: Announced, django_capture_on_commit_callbacks: Any
) -> None:
    made = job("a")
    changelist = reverse("admin:services_scheduledjob_changelist")
    for action in ("pause", "resume"):
        with django_capture_on_commit_callbacks(execute=True):
            admin_client.post(changelist, {"action": action, "_selected_action": [made.pk]})
    change = reverse("admin:services_scheduledjob_change", args=[made.pk])
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(change, {"paused": "on"})
    assert response.status_code == 302
    assert announced == [("paused", ("a",)), ("resumed", ("a",)), ("edited", ("a",))]
