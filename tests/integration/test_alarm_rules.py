"""The alarm's doors on real PostgreSQL: update_entity_state, rule evaluation and actions,
rule validation (nothing half-saved), and the signals sent on commit."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.db import transaction

from alarm import services, signals
from alarm.models import (
    AlarmEvent,
    Entity,
    PendingAction,
    Rule,
    RuleActionLog,
    RuleEntityRef,
    RuleRuntime,
)
from tests.integration.alarm_support import DOOR, DOOR_OPEN, door_open_for, event_action, make_rule

pytestmark = pytest.mark.django_db

T0 = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def report(state: str, seconds: float = 0, **kw: Any) -> bool:
    return services.update_entity_state(DOOR, state, source=kw.pop("source", "manual"),
                                        at=at(seconds), **kw)  # fmt: skip


@pytest.fixture
def received() -> Iterator[list[tuple[str, dict[str, Any]]]]:
    got: list[tuple[str, dict[str, Any]]] = []

    def on_entity(sender: Any, entity: dict[str, Any], **kw: Any) -> None:
        got.append(("entity", entity))

    def on_alarm(sender: Any, snapshot: dict[str, Any], **kw: Any) -> None:
        got.append(("alarm", snapshot))

    signals.entity_state_changed.connect(on_entity)
    signals.alarm_state_changed.connect(on_alarm)
    yield got
    signals.entity_state_changed.disconnect(on_entity)
    signals.alarm_state_changed.disconnect(on_alarm)


# --- update_entity_state ------------------------------------------------------------------------


def test_an_unknown_entity_is_created_and_reported_on_commit(
    received: list[tuple[str, dict[str, Any]]], django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        changed = services.update_entity_state(
            "binary_sensor.back_door", "on", {"device_class": "door"}, source="zigbee2mqtt",
            name="Back door", at=at(0),
        )  # fmt: skip
    assert changed is True
    entity = Entity.objects.get(entity_id="binary_sensor.back_door")
    assert (entity.domain, entity.state, entity.source, entity.last_changed) == (
        "binary_sensor", "on", "zigbee2mqtt", at(0),
    )  # fmt: skip
    assert received == [("entity", {
        "entity_id": "binary_sensor.back_door", "domain": "binary_sensor", "name": "Back door",
        "state": "on", "attributes": {"device_class": "door"},
        "last_changed": at(0).isoformat(), "source": "zigbee2mqtt",
    })]  # fmt: skip


def test_only_real_changes_are_written(django_assert_num_queries: Any) -> None:
    assert report("on", 0, attributes={"battery": 90}) is True
    written = Entity.objects.get(entity_id=DOOR).updated_at
    with django_assert_num_queries(1):  # one read, no write
        assert report("on", 5, attributes={"battery": 90}) is False
    assert report("on", 6) is False  # attributes not reported: kept
    entity = Entity.objects.get(entity_id=DOOR)
    assert (entity.updated_at, entity.attributes, entity.last_changed) == (
        written, {"battery": 90}, at(0),
    )  # fmt: skip
    assert report("on", 7, attributes={"battery": 80}) is True  # attributes count
    assert Entity.objects.get(entity_id=DOOR).last_changed == at(0)  # the state did not change
    assert report("off", 8) is True
    assert Entity.objects.get(entity_id=DOOR).last_changed == at(8)


def test_a_new_name_or_source_is_stored_without_counting_as_a_change(
    received: list[tuple[str, dict[str, Any]]], django_capture_on_commit_callbacks: Any
) -> None:
    report("on", 0)
    with django_capture_on_commit_callbacks(execute=True):
        assert report("on", 1, name="Front door", source="home_assistant") is False
    entity = Entity.objects.get(entity_id=DOOR)
    assert (entity.name, entity.source) == ("Front door", "home_assistant")
    assert received == []


def test_no_signal_for_a_change_rolled_back(
    received: list[tuple[str, dict[str, Any]]], django_capture_on_commit_callbacks: Any
) -> None:
    with (
        django_capture_on_commit_callbacks(execute=True),
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        report("on")
        raise RuntimeError("the caller's transaction fails")
    assert received == []
    assert not Entity.objects.exists()


@pytest.mark.parametrize(
    ("args", "kwargs", "problem"),
    [
        (("door", "on"), {"source": "manual"}, "must look like domain.object_id"),
        ((DOOR, 1), {"source": "manual"}, "state must be text"),
        ((DOOR, "on", ["x"]), {"source": "manual"}, "attributes must be a dict"),
        ((DOOR, "on", {"x": object()}), {"source": "manual"}, "JSON-serializable"),
        ((DOOR, "on"), {"source": "telepathy"}, "unknown source 'telepathy'"),
        ((DOOR, "on"), {"source": "manual", "at": datetime(2025, 1, 1)}, "timezone-aware"),  # noqa: DTZ001
        ((DOOR, "on"), {"source": "manual", "name": "x" * 256}, "name must be text"),
    ],
)
def test_bad_reports_are_refused_before_anything_is_written(
    args: tuple[Any, ...], kwargs: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        services.update_entity_state(*args, **kwargs)
    assert not Entity.objects.exists()


@pytest.mark.django_db(transaction=True)  # the ORM runs on another thread: it must commit
async def test_the_async_door() -> None:
    from asgiref.sync import sync_to_async
    from django.db import connections

    try:
        assert await services.aupdate_entity_state(DOOR, "on", source="mqtt", at=at(0)) is True
        assert await sync_to_async(Entity.objects.filter(entity_id=DOOR, source="mqtt").exists)()
    finally:
        await sync_to_async(connections.close_all)()  # asgiref's thread's own connection


# --- rules -------------------------------------------------------------------------------------


def test_only_the_rules_that_reference_the_entity_are_evaluated() -> None:
    make_rule(DOOR_OPEN, [], name="door")
    report("off", 0)

    def queries_of_one_change(state: str, seconds: float) -> int:
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        with CaptureQueriesContext(connection) as captured:
            report(state, seconds)
        return len(captured.captured_queries)

    few = queries_of_one_change("on", 1)
    report("off", 2)
    for n in range(30):
        make_rule({"entity_id": f"sensor.other_{n}", "above": 1}, [], name=f"other {n}")
    many = queries_of_one_change("on", 3)
    assert few == many  # no scan of all rules
    assert not RuleRuntime.objects.filter(rule__name__startswith="other").exists()


def test_a_rule_fires_once_per_rising_edge() -> None:
    rule = make_rule(DOOR_OPEN, [event_action("opened")], name="door")
    report("on", 0)
    report("on", 1, attributes={"battery": 50})  # still open: no second firing
    report("off", 2)
    report("on", 3)
    assert list(RuleActionLog.objects.order_by("fired_at").values_list("fired_at", "source")) == [
        (at(0), "event"), (at(3), "event"),
    ]  # fmt: skip
    log = RuleActionLog.objects.order_by("fired_at").first()
    assert log is not None
    assert log.trace == {"entity_id": DOOR, "value": True,
                         "nodes": {"conditions": True}}  # fmt: skip
    first_event = AlarmEvent.objects.order_by("id")[0].pk
    assert log.result == {"actions": [{"type": "emit_event", "ok": True, "event": first_event}]}
    assert AlarmEvent.objects.filter(message="opened", data={"rule": rule.pk}).count() == 2


def test_cooldown_is_honoured() -> None:
    make_rule(DOOR_OPEN, [event_action()], cooldown_seconds=60)
    for second, state in [(0, "on"), (10, "off"), (20, "on"), (30, "off"), (61, "on")]:
        report(state, second)
    assert list(RuleActionLog.objects.order_by("fired_at").values_list("fired_at", flat=True)) == [
        at(0), at(61),
    ]  # fmt: skip


def test_delayed_actions_become_pending_actions_with_the_alarm_state() -> None:
    services.arm("armed_home", at=at(-100))
    rule = make_rule(
        DOOR_OPEN, [event_action("now"), {**event_action("later"), "delay_seconds": 30}]
    )
    report("on", 0)
    [row] = PendingAction.objects.all()
    assert (row.rule_id, row.rule_name, row.fire_at, row.status) == (
        rule.pk, rule.name, at(30), "scheduled",
    )  # fmt: skip
    assert row.action == {"type": "emit_event", "message": "later", "delay_seconds": 30}
    assert row.while_armed is False  # arming (exit delay) is not armed yet
    log = RuleActionLog.objects.get()
    assert log.result["actions"][1] == {
        "type": "emit_event", "scheduled": True, "delay_seconds": 30, "pending_action": row.pk,
    }  # fmt: skip


def test_a_failing_action_is_recorded_and_the_others_still_run() -> None:
    from notifications.models import NotificationProvider

    NotificationProvider.objects.create(name="phone", type="webhook",
                                        config={"url": "https://example.com/h"})  # fmt: skip
    make_rule(DOOR_OPEN, [{"type": "notify", "message": "m", "provider": "phone"},
                          event_action("after")])  # fmt: skip
    NotificationProvider.objects.all().delete()  # deleted after the rule was saved
    assert report("on", 0) is True
    log = RuleActionLog.objects.get()
    assert log.error.startswith("actions[0]: unknown notification provider 'phone'")
    assert log.result["actions"][0]["ok"] is False
    assert AlarmEvent.objects.filter(message="after").exists()


def test_saving_a_rule_while_its_tree_holds_sets_a_baseline_and_starts_for_timers() -> None:
    report("on", 0)
    instant = make_rule(DOOR_OPEN, [event_action()], name="instant")
    waiting = make_rule(door_open_for(30), [event_action()], name="waiting")
    assert not RuleActionLog.objects.exists()  # saving is not a rising edge
    assert RuleRuntime.objects.get(rule=instant, node="conditions").status == "holding"
    runtime = RuleRuntime.objects.get(rule=waiting, node="conditions.for")
    assert runtime.status == "scheduled"


def test_editing_the_tree_resets_the_runtimes_and_disabling_cancels_pending() -> None:
    rule = make_rule(door_open_for(30), [{**event_action(), "delay_seconds": 5}])
    report("on", 0)
    assert RuleRuntime.objects.filter(rule=rule, status="scheduled").count() == 1
    PendingAction.objects.create(rule=rule, action=event_action(), fire_at=at(100))
    rule.name = "renamed"  # not the tree: the memory stays
    rule.save()
    assert RuleRuntime.objects.filter(rule=rule, status="scheduled").count() == 1
    rule.enabled = False
    rule.save()
    assert not RuleRuntime.objects.filter(rule=rule).exists()
    assert list(PendingAction.objects.values_list("status", "reason")) == [
        ("cancelled", "rule disabled"),
    ]  # fmt: skip


# --- validation: clear errors, nothing half-saved ----------------------------------------------


@pytest.mark.parametrize(
    ("conditions", "actions", "field", "message"),
    [
        ({"all": [{"foo": 1}]}, [], "conditions", "conditions.all[0]: unknown node keys ['foo']"),
        ({"for": {"seconds": -5, "condition": DOOR_OPEN}}, [], "conditions",
         "conditions.for.seconds: expected a number from 0 to 604800, got -5"),
        ([DOOR_OPEN], [], "conditions", "conditions must be a dict, got list"),
        ({"entity_id": "binary_sensor.frnt_door", "equals": "on"}, [], "conditions",
         "conditions.entity_id: unknown entity 'binary_sensor.frnt_door'"),
        (DOOR_OPEN, [{"type": "sms", "message": "x"}], "actions",
         "actions[0].type: unknown action type 'sms'"),
        (DOOR_OPEN, [{**event_action(), "delay_seconds": 0}], "actions",
         "actions[0].delay_seconds: expected a whole number of seconds from 1 to 600, got 0"),
        (DOOR_OPEN, [{**event_action(), "delay_seconds": 900}], "actions",
         "actions[0].delay_seconds: expected a whole number of seconds from 1 to 600, got 900"),
        (DOOR_OPEN, [{"type": "notify", "message": "x", "provider": "pager"}], "actions",
         "actions[0].provider: unknown notification provider 'pager'"),
    ],
)  # fmt: skip
def test_bad_rules_are_refused_with_path_named_errors_and_nothing_is_written(
    conditions: Any, actions: Any, field: str, message: str
) -> None:
    Entity.objects.create(entity_id=DOOR, state="off")
    with pytest.raises(ValidationError) as caught:
        Rule.objects.create(name="bad", conditions=conditions, actions=actions)
    assert any(m.startswith(message) for m in caught.value.message_dict[field])
    assert not Rule.objects.exists()
    assert not RuleEntityRef.objects.exists()
    assert not RuleRuntime.objects.exists()


def test_a_bad_edit_leaves_the_stored_rule_as_it_was() -> None:
    rule = make_rule(door_open_for(30), [event_action()], name="good")
    report("on", 0)
    runtimes = list(RuleRuntime.objects.values_list("node", "status"))
    rule.conditions = {"any": []}
    rule.actions = [{"type": "bogus"}]
    with pytest.raises(ValidationError) as caught:
        rule.save()
    assert set(caught.value.message_dict) == {"conditions", "actions"}
    stored = Rule.objects.get(pk=rule.pk)
    assert (stored.conditions, stored.actions) == (door_open_for(30), [event_action()])
    assert set(RuleEntityRef.objects.values_list("entity_id", flat=True)) == {DOOR}
    assert list(RuleRuntime.objects.values_list("node", "status")) == runtimes


def test_an_entity_declared_by_hand_can_be_referenced_before_it_reports() -> None:
    Entity.objects.create(entity_id="binary_sensor.garage", source="manual")
    rule = Rule.objects.create(
        name="garage", conditions={"entity_id": "binary_sensor.garage", "equals": "on"},
        actions=[event_action("garage")],
    )  # fmt: skip
    assert services.update_entity_state("binary_sensor.garage", "on", source="zigbee2mqtt")
    assert RuleActionLog.objects.filter(rule=rule).exists()
    assert Entity.objects.get(entity_id="binary_sensor.garage").source == "zigbee2mqtt"


# --- the alarm state's snapshot and signal -----------------------------------------------------


def test_snapshot_is_one_query_and_the_signal_carries_it(
    received: list[tuple[str, dict[str, Any]]],
    django_capture_on_commit_callbacks: Any,
    django_assert_num_queries: Any,
) -> None:
    with django_assert_num_queries(1):
        assert services.alarm_state_snapshot()["state"] == "disarmed"
    with django_capture_on_commit_callbacks(execute=True):
        services.arm("armed_away", at=at(0))
    with django_assert_num_queries(1):
        snapshot = services.alarm_state_snapshot()
    assert snapshot == {
        "state": "arming", "previous_state": "disarmed", "changed_at": at(0).isoformat(),
        "delay": {"kind": "exit", "until": at(60).isoformat(), "seconds": 60},
    }  # fmt: skip
    assert received == [("alarm", snapshot)]


def test_a_rule_whose_entity_was_deleted_can_still_be_saved_but_not_given_new_unknowns() -> None:
    rule = make_rule(DOOR_OPEN, [event_action()])
    Entity.objects.filter(entity_id=DOOR).delete()
    rule.enabled = False
    rule.save()  # the id it already named stays valid
    rule.conditions = {"all": [DOOR_OPEN, {"entity_id": "binary_sensor.new", "equals": "on"}]}
    with pytest.raises(ValidationError, match=r"conditions\.all\[1\]\.entity_id: unknown entity"):
        rule.save()
