"""The five maintenance tasks against real PostgreSQL, called directly with a ``slot``."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.contrib.sessions.models import Session
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext

import services.tasks
from alarm.conditions import referenced_entity_ids
from alarm.models import AlarmEvent, Entity, PendingAction, Rule, RuleActionLog, RuleEntityRef
from alarm.tasks import (
    cleanup_finished_pending_actions,
    cleanup_old_events,
    cleanup_orphan_rule_entity_refs,
    cleanup_rule_action_logs,
)
from services.models import ScheduledJob, TaskRun
from services.registry import registry
from services.runtime_settings import set_value
from services.schedules import DailyAt
from services.tasks import cleanup_expired_sessions, cleanup_task_runs

pytestmark = pytest.mark.django_db

# Far from "now": a cutoff measured from the clock instead of the slot would delete more.
SLOT = datetime(2025, 1, 15, 3, 0, tzinfo=UTC)
DAY = timedelta(days=1)
SECOND = timedelta(seconds=1)


def make_event(at: datetime) -> AlarmEvent:
    return AlarmEvent.objects.create(event_type=AlarmEvent.EventType.ARMED, timestamp=at)


def make_action_log(at: datetime) -> RuleActionLog:
    return RuleActionLog.objects.create(rule_name="r", fired_at=at, source="event")


def make_finished_action(at: datetime) -> PendingAction:
    return PendingAction.objects.create(
        action={"type": "emit_event", "message": "m"}, fire_at=at, status="fired", finished_at=at
    )


RETENTION_TASKS = [
    pytest.param(cleanup_old_events, make_event, "retention.alarm_events_days", 30, id="events"),
    pytest.param(
        cleanup_rule_action_logs,
        make_action_log,
        "retention.rule_action_logs_days",
        14,
        id="action_logs",
    ),
    pytest.param(
        cleanup_finished_pending_actions,
        make_finished_action,
        "retention.pending_actions_days",
        14,
        id="pending_actions",
    ),
]


def test_scheduled_pending_actions_are_never_cleaned_up() -> None:
    old = SLOT - 1000 * DAY
    live = PendingAction.objects.create(action={"type": "emit_event", "message": "m"}, fire_at=old)
    make_finished_action(old)
    assert cleanup_finished_pending_actions(slot=SLOT)["deleted"] == 1
    assert list(PendingAction.objects.values_list("pk", flat=True)) == [live.pk]


@pytest.mark.parametrize(("cleanup", "make_row", "key", "default_days"), RETENTION_TASKS)
@pytest.mark.parametrize("override_days", [None, 7])
def test_retention_deletes_strictly_before_the_cutoff(
    cleanup: Callable[..., dict[str, Any]],
    make_row: Callable[[datetime], Any],
    key: str,
    default_days: int,
    override_days: int | None,
) -> None:
    if override_days is not None:
        set_value(key, override_days)
    cutoff = SLOT - (override_days or default_days) * DAY
    old = [make_row(cutoff - SECOND), make_row(cutoff - 400 * DAY)]
    kept = [make_row(cutoff), make_row(cutoff + SECOND), make_row(SLOT + DAY)]

    result = cleanup(slot=SLOT)

    assert result == {
        "deleted": 2,
        "cutoff": cutoff.isoformat(),
        "retention_days": override_days or default_days,
    }
    model = type(kept[0])
    assert set(model.objects.values_list("pk", flat=True)) == {row.pk for row in kept}
    assert not model.objects.filter(pk__in=[row.pk for row in old]).exists()


@pytest.mark.parametrize(("cleanup", "make_row", "key", "default_days"), RETENTION_TASKS)
@pytest.mark.parametrize("disabled_days", [0, -1])
def test_retention_zero_or_less_disables_the_cleanup(
    cleanup: Callable[..., dict[str, Any]],
    make_row: Callable[[datetime], Any],
    key: str,
    default_days: int,
    disabled_days: int,
) -> None:
    set_value(key, disabled_days)
    row = make_row(SLOT - 1000 * DAY)

    assert cleanup(slot=SLOT) == {"skipped": "retention disabled", "setting": key}
    assert type(row).objects.filter(pk=row.pk).exists()


def test_deletes_go_in_batches_and_log_one_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(services.tasks, "DELETE_BATCH_SIZE", 2)
    for days in range(31, 36):
        make_event(SLOT - days * DAY)
    caplog.set_level(logging.INFO, logger="services.tasks")

    with CaptureQueriesContext(connection) as queries:
        assert cleanup_old_events(slot=SLOT)["deleted"] == 5

    deletes = [q["sql"] for q in queries if q["sql"].startswith("DELETE")]
    assert len(deletes) == 3  # 2 + 2 + 1
    assert [(r.event, r.task, r.deleted) for r in caplog.records] == [  # type: ignore[attr-defined]
        ("cleanup.done", "cleanup_old_events", 5)
    ]


def test_a_naive_slot_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        cleanup_old_events(slot=datetime(2025, 1, 15, 3, 0))  # noqa: DTZ001


# --- task runs ------------------------------------------------------------------------------


def make_run(job: ScheduledJob, started_at: datetime, status: str = "success") -> TaskRun:
    return TaskRun.objects.create(job=job, source="scheduled", status=status, started_at=started_at)


def job_named(name: str) -> ScheduledJob:
    return ScheduledJob.objects.create(name=name)


@pytest.mark.parametrize(
    ("days", "kept_per_task", "expected_survivors"),
    [
        # Newest first: new-0, new-1, running (new-2), new-3, then old-1d, old-2d past the cutoff.
        (30, 2, {"new-0", "new-1", "running", "other-new"}),
        (30, 4, {"new-0", "new-1", "running", "new-3", "other-new"}),
        (30, 10, {"new-0", "new-1", "running", "new-3", "other-new"}),
        (30, 0, {"new-0", "new-1", "running", "new-3", "other-new"}),
        (0, 2, {"new-0", "new-1", "running", "other-new", "other-old"}),
        (-1, 3, {"new-0", "new-1", "running", "other-new", "other-old"}),
    ],
)
def test_task_runs_older_than_retention_or_beyond_the_cap_go_running_never(
    days: int, kept_per_task: int, expected_survivors: set[str]
) -> None:
    set_value("retention.task_runs_days", days)
    set_value("retention.task_runs_max_per_task", kept_per_task)
    cutoff = SLOT - 30 * DAY
    busy, quiet = job_named("busy"), job_named("quiet")
    runs = {
        "new-0": make_run(busy, SLOT - 1 * DAY),
        "new-1": make_run(busy, SLOT - 2 * DAY),
        "running": make_run(busy, SLOT - 3 * DAY, status="running"),
        "new-3": make_run(busy, cutoff, status="failure"),  # at the cutoff: not older
        "old-1d": make_run(busy, cutoff - 1 * DAY),
        "old-2d": make_run(busy, cutoff - 2 * DAY),
        "other-new": make_run(quiet, SLOT - 1 * DAY),
        "other-old": make_run(quiet, cutoff - 100 * DAY),
    }

    result = cleanup_task_runs(slot=SLOT)

    survivors = {name for name, run in runs.items() if TaskRun.objects.filter(pk=run.pk).exists()}
    assert survivors == expected_survivors
    assert result["deleted"] == len(runs) - len(expected_survivors)
    assert result["kept_per_task"] == kept_per_task
    assert result["cutoff"] == (cutoff.isoformat() if days > 0 else None)


def test_task_runs_started_at_the_same_instant_are_ranked_by_id() -> None:
    set_value("retention.task_runs_max_per_task", 2)
    job = job_named("ties")
    at = SLOT - DAY  # within the retention: only the cap removes one
    first, second, third = (make_run(job, at) for _ in range(3))

    assert cleanup_task_runs(slot=SLOT)["deleted"] == 1
    assert set(TaskRun.objects.values_list("pk", flat=True)) == {second.pk, third.pk}
    assert not TaskRun.objects.filter(pk=first.pk).exists()


@pytest.mark.parametrize("disabled_days", [0, -5])
def test_task_runs_both_limits_off_disables(disabled_days: int) -> None:
    set_value("retention.task_runs_days", disabled_days)
    set_value("retention.task_runs_max_per_task", 0)
    run = make_run(job_named("j"), SLOT - 1000 * DAY)

    assert cleanup_task_runs(slot=SLOT)["skipped"] == "retention disabled"
    assert TaskRun.objects.filter(pk=run.pk).exists()


# --- sessions -------------------------------------------------------------------------------


def test_sessions_expired_by_the_slot_are_deleted() -> None:
    for key, expires in [("gone", SLOT - SECOND), ("edge", SLOT), ("live", SLOT + DAY)]:
        Session.objects.create(session_key=key, session_data="", expire_date=expires)

    assert cleanup_expired_sessions(slot=SLOT) == {"deleted": 1, "cutoff": SLOT.isoformat()}
    assert set(Session.objects.values_list("session_key", flat=True)) == {"edge", "live"}


# --- rules and their entity refs ------------------------------------------------------------


def leaf(entity_id: str) -> dict[str, Any]:
    return {"entity_id": entity_id, "equals": "on"}


def refs_of(rule: Rule) -> set[str]:
    return set(rule.entity_refs.values_list("entity_id", flat=True))


@pytest.fixture
def declared() -> None:
    """The entities these rules name: a rule refuses entity ids no Entity row has."""
    for entity_id in ("a.one", "a.two", "b.three", "a.keep", "a.drop", "b.stays", "c.same"):
        Entity.objects.create(entity_id=entity_id)


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        ({}, {"all": [leaf("a.one"), leaf("a.two")]}, {"a.one", "a.two"}),
        ({"all": [leaf("a.one"), leaf("a.two")]}, {"not": leaf("a.two")}, {"a.two"}),
        ({"any": [leaf("a.one")]}, {}, set()),
        (leaf("a.one"), {"for": {"seconds": 5, "condition": leaf("b.three")}}, {"b.three"}),
    ],
)
@pytest.mark.usefixtures("declared")
def test_rule_save_syncs_entity_refs(
    first: dict[str, Any], second: dict[str, Any], expected: set[str]
) -> None:
    rule = Rule.objects.create(name="r", conditions=first)
    assert refs_of(rule) == referenced_entity_ids(first)
    rule.conditions = second
    rule.save()
    assert refs_of(rule) == expected


def test_rule_save_refuses_a_tree_it_cannot_read() -> None:
    with pytest.raises(ValidationError, match=r"conditions\.all\[0\]: unknown node keys"):
        Rule.objects.create(name="bad", conditions={"all": [{"foo": 1}]})
    assert not Rule.objects.exists()


@pytest.mark.parametrize(
    ("conditions", "actions", "error_fields"),
    [
        ({}, [], set()),
        ([], [], {"conditions"}),
        ({"any": "x"}, [], {"conditions"}),
        ({}, {"notify": 1}, {"actions"}),
        ("x", "y", {"conditions", "actions"}),
    ],
)
def test_rule_clean_reports_field_errors(
    conditions: object, actions: object, error_fields: set[str]
) -> None:
    rule = Rule(name="r", conditions=conditions, actions=actions)
    try:
        rule.clean()
    except ValidationError as exc:
        assert set(exc.message_dict) == error_fields
    else:
        assert error_fields == set()


@pytest.mark.usefixtures("declared")
def test_orphan_refs_go_and_unparseable_rules_keep_theirs() -> None:
    edited = Rule.objects.create(
        name="edited", conditions={"all": [leaf("a.keep"), leaf("a.drop")]}
    )
    broken = Rule.objects.create(name="broken", conditions=leaf("b.stays"))
    untouched = Rule.objects.create(name="untouched", conditions=leaf("c.same"))
    # Edits that bypass Rule.save(): the refs are left behind.
    Rule.objects.filter(pk=edited.pk).update(conditions={"any": [leaf("a.keep"), leaf("a.new")]})
    Rule.objects.filter(pk=broken.pk).update(conditions={"bogus": True})

    result = cleanup_orphan_rule_entity_refs(slot=SLOT)

    assert result == {"deleted": 1, "rules_checked": 3, "unparseable_rules": 1}
    assert refs_of(edited) == {"a.keep"}  # a.new is not added: this task only removes
    assert refs_of(broken) == {"b.stays"}
    assert refs_of(untouched) == {"c.same"}
    assert RuleEntityRef.objects.count() == 3


# --- models ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entity_id", "domain"),
    [("binary_sensor.front_door", "binary_sensor"), ("lock.back", "lock")],
)
def test_entity_domain_is_derived_on_save(entity_id: str, domain: str) -> None:
    entity = Entity.objects.create(entity_id="sensor.placeholder")
    entity.entity_id = entity_id
    entity.save(update_fields=["entity_id"])
    entity.refresh_from_db()
    assert entity.domain == domain


@pytest.mark.parametrize("entity_id", ["front_door", "Sensor.x", ""])
def test_entity_with_a_malformed_id_is_refused(entity_id: str) -> None:
    with pytest.raises(ValidationError, match=r"domain\.object_id"):
        Entity.objects.create(entity_id=entity_id)


def test_action_log_keeps_the_rule_name_after_the_rule_is_deleted() -> None:
    rule = Rule.objects.create(name="porch light")
    log = RuleActionLog.objects.create(rule=rule, source="event")
    rule.delete()
    log.refresh_from_db()
    assert (log.rule_id, log.rule_name) == (None, "porch light")


# --- registration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "schedule"),
    [
        ("cleanup_old_events", DailyAt(3, 0)),
        ("cleanup_task_runs", DailyAt(3, 15)),
        ("cleanup_rule_action_logs", DailyAt(3, 30)),
        ("cleanup_finished_pending_actions", DailyAt(3, 35)),
        ("cleanup_expired_sessions", DailyAt(4, 0)),
        ("cleanup_orphan_rule_entity_refs", DailyAt(4, 30)),
    ],
)
def test_maintenance_tasks_are_registered(name: str, schedule: DailyAt) -> None:
    spec = registry.get(name)
    assert spec.schedule == schedule
    assert (spec.tags, spec.retries, spec.timeout) == (("maintenance",), 2, 600.0)
    assert spec.wants_slot
    assert spec.description and not spec.description.endswith("\n")
