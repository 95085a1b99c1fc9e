"""``manage.py runworker`` as a real process: fires jobs, stops cleanly, recovers from kill -9."""

from __future__ import annotations

import json
import signal
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from services.models import TaskRun
from tests.acceptance.conftest import Spawn

pytestmark = [pytest.mark.acceptance, pytest.mark.django_db(transaction=True)]


def running_rows() -> int:
    return TaskRun.objects.filter(status=TaskRun.Status.RUNNING).count()


def statuses(task: str) -> list[str]:
    return list(
        TaskRun.objects.filter(job__name=task)
        .order_by("started_at")
        .values_list("status", flat=True)
    )


def test_a_job_fires_and_health_answers(spawn: Spawn) -> None:
    worker = spawn()
    worker.wait_event("cron.ready")
    worker.wait_event("task.success")
    with urllib.request.urlopen(f"http://127.0.0.1:{worker.health_port}/healthz", timeout=5) as r:
        body = json.load(r)
    assert r.status == 200 and body["status"] == "ok"
    assert body["components"]["cron"]["state"] == "running"
    assert body["components"]["listener"]["state"] == "listening"
    assert body["db"]["connected"] is True
    worker.signal(signal.SIGTERM)
    assert worker.wait_exit() == 0
    assert "success" in statuses("acceptance_tick")
    assert running_rows() == 0


def test_sigterm_mid_task_lets_it_finish_and_exits_zero(
    spawn: Spawn, worker_env: dict[str, str]
) -> None:
    worker_env.update(ACCEPTANCE_SLOW_EVERY="1", ACCEPTANCE_SLOW_SECONDS="1.5")
    worker = spawn(worker_env)
    worker.wait_event("acceptance.slow_started")
    worker.signal(signal.SIGTERM)
    assert worker.wait_exit() == 0
    assert worker.count("runner.stopping") == 1
    ran = [s for s in statuses("acceptance_slow") if s != "skipped"]  # later slots overlap it
    assert ran == ["success"]  # the run in progress finished within the grace
    assert running_rows() == 0


def test_task_past_the_grace_is_cancelled_and_recorded(
    spawn: Spawn, worker_env: dict[str, str]
) -> None:
    worker_env.update(
        ACCEPTANCE_SLOW_EVERY="1", ACCEPTANCE_SLOW_SECONDS="600", WORKER_SHUTDOWN_GRACE="0.5"
    )
    worker = spawn(worker_env)
    worker.wait_event("acceptance.slow_started")
    worker.signal(signal.SIGTERM)
    assert worker.wait_exit() == 0
    run = TaskRun.objects.filter(job__name="acceptance_slow").latest("started_at")
    assert run.status == "failure" and run.error.startswith("cancelled")
    assert running_rows() == 0


def test_second_signal_exits_at_once(spawn: Spawn, worker_env: dict[str, str]) -> None:
    worker_env.update(ACCEPTANCE_SLOW_EVERY="1", ACCEPTANCE_SLOW_SECONDS="600")
    worker = spawn(worker_env)
    worker.wait_event("acceptance.slow_started")
    worker.signal(signal.SIGTERM)
    worker.wait_event("runner.stopping")
    worker.signal(signal.SIGINT)
    assert worker.wait_exit(timeout=10) == 1
    assert worker.count("runner.forced") == 1
    assert running_rows() == 0


def test_kill_9_mid_task_then_restart_recovers(spawn: Spawn, worker_env: dict[str, str]) -> None:
    worker_env.update(
        ACCEPTANCE_SLOW_EVERY="1", ACCEPTANCE_SLOW_SECONDS="600", WORKER_RUN_LEASE="1"
    )
    first = spawn(worker_env)
    first.wait_event("acceptance.slow_started")
    first.kill()
    assert running_rows() >= 1  # what kill -9 leaves behind

    second = spawn(worker_env)
    second.wait_event("cron.runs_abandoned")  # at start, or at the task's next claim
    second.wait_event("acceptance.slow_started")  # the task runs again
    second.wait_event("task.success")  # and the other jobs go on
    second.signal(signal.SIGTERM)
    assert second.wait_exit() == 0
    abandoned = TaskRun.objects.filter(job__name="acceptance_slow", error__startswith="abandoned")
    assert abandoned.count() >= 1
    assert running_rows() == 0


def test_two_workers_run_each_slot_once(spawn: Spawn, worker_env: dict[str, str]) -> None:
    workers = [spawn(dict(worker_env)), spawn(dict(worker_env, WORKER_HEALTH_PORT="0"))]
    for worker in workers:
        worker.wait_event("cron.ready")
    for _ in range(4):
        workers[0].wait_event("task.success")  # a few seconds of competing for slots
        workers[0].lines.clear()
    for worker in workers:
        worker.signal(signal.SIGTERM)
    assert [w.wait_exit() for w in workers] == [0, 0]
    calls = Counter(Path(worker_env["ACCEPTANCE_TICK_LOG"]).read_text().split())
    assert calls and max(calls.values()) == 1, calls.most_common(3)
    rows = TaskRun.objects.filter(job__name="acceptance_tick", status="success").count()
    assert rows == len(calls)


def test_once_runs_due_jobs_and_exits(spawn: Spawn) -> None:
    worker = spawn(None, "--once")
    assert worker.wait_exit(timeout=30) == 0
    worker.wait_event("cron.once_done")
    assert running_rows() == 0
