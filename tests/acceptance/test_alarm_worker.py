"""The alarm's timers in ``manage.py runworker`` as a real process, against real PostgreSQL.

This test process is "the web": it writes rows with the ORM and commits; only the database
triggers' NOTIFY (or the worker's reload at start) can bring them to the worker.
"""

from __future__ import annotations

import signal
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from alarm import services
from alarm.models import AlarmSettings, Entity, PendingAction, Rule, RuleActionLog
from tests.acceptance.conftest import Spawn, Worker

pytestmark = [pytest.mark.acceptance, pytest.mark.django_db(transaction=True)]

TIMERS_ONLY = ("--only", "alarm_timers")  # the listener always runs
DOOR = "binary_sensor.front_door"


def door_rule(seconds: float) -> Rule:
    Entity.objects.create(entity_id=DOOR, state="off")
    return Rule.objects.create(
        name=f"door open {seconds} s",
        conditions={"for": {"seconds": seconds, "condition": {"entity_id": DOOR, "equals": "on"}}},
        actions=[{"type": "emit_event", "message": "door still open"}],
    )


def timers_on_heap(worker: Worker) -> int:
    return int(worker.healthz()["components"]["alarm_timers"]["timers"])


def wait_heap(worker: Worker, count: int, timeout: float = 10.0) -> None:
    """Poll /healthz (the worker's own view) until ``count`` timers are on its heap."""
    deadline = time.monotonic() + timeout
    while timers_on_heap(worker) != count:
        assert time.monotonic() < deadline, f"heap never held {count}; log:\n{worker.log()}"
        time.sleep(0.02)


def test_a_rule_timer_fires_with_no_other_event(spawn: Spawn) -> None:
    worker = spawn(None, *TIMERS_ONLY)
    worker.wait_event("alarm.timers_loaded")
    rule = door_rule(1.5)
    opened = timezone.now()
    assert services.update_entity_state(DOOR, "on", source="manual", at=opened)

    line = worker.wait_event("alarm.rule_fired", timeout=15)
    assert "source='timer'" in line
    log = RuleActionLog.objects.get(rule=rule)
    assert log.source == "timer"
    assert log.fired_at >= opened + timedelta(seconds=1.5)  # never early
    assert log.fired_at - opened < timedelta(seconds=3)
    worker.signal(signal.SIGTERM)
    assert worker.wait_exit() == 0


def test_timers_that_came_due_while_the_worker_was_killed_fire_at_restart(
    spawn: Spawn, worker_env: dict[str, str]
) -> None:
    worker = spawn(None, *TIMERS_ONLY)
    worker.wait_event("alarm.timers_loaded")
    AlarmSettings.objects.update_or_create(pk=1, defaults={"exit_delay_seconds": 2})
    door_rule(2)
    now = timezone.now()
    services.update_entity_state(DOOR, "on", source="manual", at=now)  # a runtime, due in 2 s
    action = PendingAction.objects.create(
        action={"type": "emit_event", "message": "later"}, fire_at=now + timedelta(seconds=2)
    )
    services.arm("armed_away", at=now)  # the exit delay, 2 s
    wait_heap(worker, 3)
    worker.kill()  # kill -9: nothing is fired, nothing cleaned up

    while timezone.now() < now + timedelta(seconds=2.5):
        time.sleep(0.05)  # waiting for the wall clock to pass the due times, not for the worker
    assert PendingAction.objects.get(pk=action.pk).status == "scheduled"
    assert services.alarm_state_snapshot()["state"] == "arming"

    restarted = spawn(dict(worker_env), *TIMERS_ONLY)
    loaded = restarted.wait_event("alarm.timers_loaded")
    assert "overdue=3" in loaded and "timers=3" in loaded
    restarted.wait_event("alarm.rule_fired")
    restarted.wait_event("alarm.state_changed")
    fired = PendingAction.objects.get(pk=action.pk)
    assert fired.status == "fired" and fired.finished_at is not None
    assert fired.finished_at >= fired.fire_at
    assert services.alarm_state_snapshot()["state"] == "armed_away"
    assert RuleActionLog.objects.filter(source="timer").count() == 1
    restarted.signal(signal.SIGTERM)
    assert restarted.wait_exit() == 0
