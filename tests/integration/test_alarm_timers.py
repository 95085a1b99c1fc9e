"""The alarm timer component on real PostgreSQL: rows scheduled by any writer reach its heap
by NOTIFY and fire at their time (a fake clock), once, whoever and however many fire them."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from django.db import connection

from alarm import services
from alarm.models import AlarmEvent, PendingAction, Rule, RuleActionLog, RuleRuntime
from alarm.timers import AlarmTimers
from services import db
from tests.integration.alarm_support import (
    DOOR,
    Alarm,
    DbCall,
    alarm,
    door_open_for,
    event_action,
    make_rule,
    quiet,
    runtime_of,
    wait_total,
    waited,
)

pytestmark = pytest.mark.django_db(transaction=True)
__all__ = ["alarm"]  # the fixture, imported for pytest

INSERT_ACTION = """
INSERT INTO alarm_pendingaction
    (rule_id, rule_name, action, fire_at, status, while_armed, created_at, finished_at,
     fired_by, reason, result, error)
VALUES (NULL, 'sql', %(action)s::jsonb, %(fire_at)s, 'scheduled', false, now(), NULL,
        '', '', '{}', '')
RETURNING id
"""


def open_door(alarm: Alarm, state: str = "on") -> bool:
    """The door reports ``state`` now (the fake clock's now)."""
    return services.update_entity_state(DOOR, state, source="manual", at=alarm.clock.now())


def logs() -> list[tuple[str, str]]:
    return list(RuleActionLog.objects.order_by("id").values_list("rule_name", "source"))


def events(message: str | None = None) -> list[dict[str, Any]]:
    found = AlarmEvent.objects.order_by("id")
    if message is not None:
        found = found.filter(message=message)
    return [dict(row) for row in found.values("message", "data", "event_type")]


def pending(fire_at: Any, action: dict[str, Any] | None = None, **fields: Any) -> int:
    row = PendingAction.objects.create(
        action=action or event_action("later"), fire_at=fire_at, **fields
    )
    return row.pk


async def test_door_open_for_5_s_fires_at_5_s_with_no_other_event(
    alarm: Alarm, db_call: DbCall
) -> None:
    timers = await alarm.start()
    rule = await db_call(make_rule, door_open_for(5), [event_action()], name="door 5 s")
    assert await db_call(open_door, alarm) is True
    runtime = await db_call(runtime_of, rule.pk)
    assert (runtime.status, runtime.scheduled_for) == ("scheduled", alarm.at(5))
    await waited(timers.wait_scheduled(("runtime", runtime.pk), alarm.at(5)))

    alarm.clock.advance(4.999)
    await quiet(alarm)
    assert await db_call(logs) == []  # never early

    alarm.clock.advance(0.001)  # nothing else happens: only the timer
    await waited(timers.wait_outcomes("runtime.fired", 1))
    assert await db_call(logs) == [("door 5 s", "timer")]
    assert [e["message"] for e in await db_call(events)] == ["door open"]
    log = await db_call(lambda: RuleActionLog.objects.get())
    assert log.fired_at == alarm.at(5)
    assert log.trace["node"] == "conditions.for" and log.trace["value"] is True
    holding = await db_call(runtime_of, rule.pk)
    assert (holding.status, holding.since) == ("holding", alarm.at(0))
    assert ("runtime", runtime.pk) not in timers.timers


async def test_the_condition_turning_false_cancels_the_timer(alarm: Alarm, db_call: DbCall) -> None:
    timers = await alarm.start()
    rule = await db_call(make_rule, door_open_for(5), [event_action()])
    await db_call(open_door, alarm)
    runtime = await db_call(runtime_of, rule.pk)
    key = ("runtime", runtime.pk)
    await waited(timers.wait_scheduled(key))

    alarm.clock.advance(3)
    await db_call(open_door, alarm, "off")  # closed after 3 s
    await waited(timers.wait_until(lambda: key not in timers.timers))
    assert (await db_call(runtime_of, rule.pk)).status == "idle"

    alarm.clock.advance(10)
    await quiet(alarm)
    assert await db_call(logs) == []
    assert timers.outcomes == Counter()


async def test_a_timer_rescheduled_later_fires_at_its_new_time(
    alarm: Alarm, db_call: DbCall
) -> None:
    timers = await alarm.start()
    pk = await db_call(pending, alarm.at(2))
    await waited(timers.wait_scheduled(("action", pk), alarm.at(2)))
    await db_call(lambda: PendingAction.objects.filter(pk=pk).update(fire_at=alarm.at(6)))
    await waited(timers.wait_scheduled(("action", pk), alarm.at(6)))

    alarm.clock.advance(5.9)
    await quiet(alarm)
    assert (await db_call(PendingAction.objects.get, pk=pk)).status == "scheduled"
    alarm.clock.advance(0.1)
    await waited(timers.wait_outcomes("action.fired", 1))
    assert (await db_call(PendingAction.objects.get, pk=pk)).status == "fired"


async def test_a_timer_scheduled_by_plain_sql_from_another_connection_fires(
    alarm: Alarm, db_call: DbCall
) -> None:
    timers = await alarm.start()
    action = json.dumps(event_action("from sql", data={"zone": 3}))
    async with await psycopg.AsyncConnection.connect(
        db.conninfo("test-other"), autocommit=True
    ) as other:
        cursor = await other.execute(INSERT_ACTION, {"action": action, "fire_at": alarm.at(3)})
        (pk,) = await cursor.fetchone() or (None,)
    await waited(timers.wait_scheduled(("action", pk), alarm.at(3)))  # by NOTIFY, at once
    alarm.clock.advance(3)
    await waited(timers.wait_outcomes("action.fired", 1))
    [event] = await db_call(events, "from sql")
    assert event["data"] == {"zone": 3, "rule": None, "pending_action": pk}
    row = await db_call(PendingAction.objects.get, pk=pk)
    assert (row.status, row.fired_by, row.finished_at) == ("fired", "w0", alarm.at(3))


async def test_timers_that_came_due_while_no_worker_ran_fire_at_start(
    alarm: Alarm, db_call: DbCall
) -> None:
    rule = await db_call(make_rule, door_open_for(3), [event_action("door")], name="door 3 s")
    await db_call(open_door, alarm)
    action = await db_call(pending, alarm.at(2))
    alarm.clock.advance(10)  # no worker ran meanwhile

    timers = await alarm.start()
    await waited(timers.wait_outcomes("runtime.fired", 1))
    await waited(timers.wait_outcomes("action.fired", 1))
    assert await db_call(logs) == [("door 3 s", "timer")]
    assert (await db_call(PendingAction.objects.get, pk=action)).status == "fired"
    assert (await db_call(runtime_of, rule.pk)).status == "holding"


async def test_stale_policy_per_kind_after_a_long_downtime(alarm: Alarm, db_call: DbCall) -> None:
    rule = await db_call(make_rule, door_open_for(3), [event_action("door")])
    await db_call(open_door, alarm)
    action = await db_call(pending, alarm.at(2))
    fresh = await db_call(pending, alarm.at(59 + 10))  # due 1 s after the restart
    await db_call(services.arm, "armed_away", at=alarm.at())  # exit delay: 60 s
    alarm.clock.advance(70)  # the worker was down for 70 s

    timers = await alarm.start()
    # an action more than 60 s late is cancelled as stale; the alarm delay always completes
    await waited(timers.wait_outcomes("action.stale", 1))
    await waited(timers.wait_outcomes("alarm.armed_away", 1))
    row = await db_call(PendingAction.objects.get, pk=action)
    assert row.status == "cancelled" and row.reason.startswith("stale: 68 s late")
    assert (await db_call(services.alarm_state_snapshot))["state"] == "armed_away"
    # a rule's timer more than 60 s late counts its wait again from the restart
    await waited(timers.wait_outcomes("runtime.restarted", 1))
    runtime = await db_call(runtime_of, rule.pk)
    assert (runtime.status, runtime.scheduled_for) == ("scheduled", alarm.at(73))
    await waited(timers.wait_scheduled(("runtime", runtime.pk), alarm.at(73)))
    alarm.clock.advance(3)
    await waited(timers.wait_outcomes("runtime.fired", 1))
    await waited(timers.wait_outcomes("action.fired", 1))  # the one not late
    assert (await db_call(PendingAction.objects.get, pk=fresh)).status == "fired"


async def test_two_workers_fire_each_timer_exactly_once(alarm: Alarm, db_call: DbCall) -> None:
    first = await alarm.start(replicas=2)
    second = alarm.workers[1].timers
    provider = await db_call(make_provider, "phone")
    due = alarm.at(2)

    def schedule() -> list[int]:
        rows = [PendingAction(action=event_action(f"e{n}"), fire_at=due) for n in range(150)]
        notify = {"type": "notify", "message": "hello", "provider": provider}
        rows += [PendingAction(action=notify, fire_at=due) for _ in range(10)]
        return [row.pk for row in PendingAction.objects.bulk_create(rows)]

    pks = await db_call(schedule)
    for timers in (first, second):
        await waited(heap_holds(timers, len(pks)))
    alarm.clock.advance(2)

    await wait_total(alarm, "action.fired", len(pks))
    await quiet(alarm)
    assert first.outcomes["action.fired"] + second.outcomes["action.fired"] == len(pks)
    statuses = await db_call(
        lambda: Counter(PendingAction.objects.values_list("status", flat=True))
    )
    assert statuses == {"fired": len(pks)}
    per_action = await db_call(
        lambda: Counter(AlarmEvent.objects.values_list("data__pending_action", flat=True))
    )
    assert len(per_action) == 150 and set(per_action.values()) == {1}
    assert await db_call(delivery_count) == 10


async def heap_holds(timers: AlarmTimers, count: int) -> None:
    await timers.wait_until(lambda: len(timers.timers) == count)


def make_provider(name: str, enabled: bool = True) -> str:
    from notifications.models import NotificationProvider

    NotificationProvider.objects.create(
        name=name, type="webhook", enabled=enabled, config={"url": "https://example.com/hook"}
    )
    return name


def delivery_count() -> int:
    from notifications.models import NotificationDelivery

    return NotificationDelivery.objects.count()


async def test_a_notify_action_goes_through_the_outbox_once(alarm: Alarm, db_call: DbCall) -> None:
    from notifications.models import NotificationDelivery

    timers = await alarm.start()
    await db_call(make_provider, "phone")
    notify = {"type": "notify", "message": "Door still open", "title": "Alarm"}
    pk = await db_call(pending, alarm.at(1), notify)
    await waited(timers.wait_scheduled(("action", pk)))
    alarm.clock.advance(1)
    await waited(timers.wait_outcomes("action.fired", 1))
    delivery = await db_call(lambda: NotificationDelivery.objects.select_related("provider").get())
    assert (delivery.provider.name, delivery.message, delivery.title) == (
        "phone", "Door still open", "Alarm",
    )  # fmt: skip
    assert delivery.idempotency_key == f"pending-action-{pk}:phone"
    row = await db_call(PendingAction.objects.get, pk=pk)
    assert row.result == {"deliveries": [delivery.pk]}


async def test_a_malformed_action_fails_alone_with_its_reason(
    alarm: Alarm, db_call: DbCall
) -> None:
    timers = await alarm.start()
    bad = await db_call(pending, alarm.at(1), {"type": "emit_event"})  # no message (by SQL...)
    good = await db_call(pending, alarm.at(1))
    await waited(timers.wait_until(lambda: len(timers.timers) == 2))
    alarm.clock.advance(1)
    await waited(timers.wait_outcomes("action.failed", 1))
    await waited(timers.wait_outcomes("action.fired", 1))
    row = await db_call(PendingAction.objects.get, pk=bad)
    assert row.status == "failed"
    assert row.error == "actions[0]: missing keys ['message']"
    assert (await db_call(PendingAction.objects.get, pk=good)).status == "fired"


async def test_pending_actions_of_a_disabled_or_deleted_rule_are_cancelled(
    alarm: Alarm, db_call: DbCall
) -> None:
    timers = await alarm.start()
    rule = await db_call(make_rule, {}, [], name="r")
    gone = await db_call(make_rule, {}, [], name="gone")
    kept = await db_call(pending, alarm.at(5), rule=rule)
    dropped = await db_call(pending, alarm.at(5), rule=gone)
    await waited(timers.wait_until(lambda: len(timers.timers) == 2))

    def disable_and_delete() -> None:
        rule.enabled = False
        rule.save()
        Rule.objects.filter(pk=gone.pk).delete()

    await db_call(disable_and_delete)
    await waited(timers.wait_until(lambda: len(timers.timers) == 0))  # cancel notices
    rows = {r.pk: r for r in await db_call(lambda: list(PendingAction.objects.all()))}
    assert (rows[kept].status, rows[kept].reason) == ("cancelled", "rule disabled")
    assert (rows[dropped].status, rows[dropped].reason) == ("cancelled", "rule deleted")
    assert rows[dropped].rule_name == "gone" or rows[dropped].rule_id is None


async def test_a_wall_clock_step_forward_does_not_fire_a_timer_early(
    alarm: Alarm, db_call: DbCall
) -> None:
    timers = await alarm.start()
    pk = await db_call(pending, alarm.at(5))
    await waited(timers.wait_scheduled(("action", pk)))
    alarm.clock.jump_wall(3600)
    alarm.clock.advance(4.9)
    await quiet(alarm)
    assert (await db_call(PendingAction.objects.get, pk=pk)).status == "scheduled"
    alarm.clock.advance(0.1)
    await waited(timers.wait_outcomes("action.fired", 1))


async def test_after_a_listener_reconnect_the_tables_are_read_again(
    alarm: Alarm, db_call: DbCall
) -> None:
    timers = await alarm.start()

    def cut_and_schedule() -> int:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'alarm-worker-listener' AND datname = current_database()"
            )
        return pending(alarm.at(1))

    pk = await db_call(cut_and_schedule)  # NOTIFY may be lost: the reload finds the row
    await waited(timers.wait_loaded(2))
    await waited(timers.wait_scheduled(("action", pk)))
    alarm.clock.advance(1)
    await waited(timers.wait_outcomes("action.fired", 1))


async def test_malformed_notices_are_counted_and_ignored(alarm: Alarm, db_call: DbCall) -> None:
    timers = await alarm.start()

    def notify_garbage() -> int:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify('alarm_timers', 'action nope 12')")
            cursor.execute("SELECT pg_notify('alarm_timers', 'x')")
        return pending(alarm.at(1))

    pk = await db_call(notify_garbage)
    await waited(timers.wait_scheduled(("action", pk)))
    assert timers.malformed == 2
    alarm.clock.advance(1)
    await waited(timers.wait_outcomes("action.fired", 1))
    assert timers.health()["malformed_notices"] == 2


async def test_idle_component_sleeps_without_a_deadline(alarm: Alarm, db_call: DbCall) -> None:
    timers = await alarm.start()
    await quiet(alarm)
    assert timers.health()["next_due_at"] is None
    pk = await db_call(pending, alarm.at(30))
    await waited(timers.wait_scheduled(("action", pk)))
    assert timers.health()["next_due_at"] == alarm.at(30).isoformat()
    await db_call(lambda: PendingAction.objects.filter(pk=pk).update(status="cancelled"))
    await waited(timers.wait_until(lambda: len(timers.timers) == 0))
    assert timers.health()["timers"] == 0


def test_timer_rows_of_unknown_kinds_do_not_exist() -> None:
    # The three tables the LOAD statement reads are the only timer tables: keep it so.
    from alarm.timer_policy import KINDS

    assert KINDS == ("runtime", "action", "alarm")
    assert RuleRuntime.Status.SCHEDULED == "scheduled"
    assert timedelta(seconds=1)


async def test_a_lost_timer_connection_stops_the_component_and_a_restart_fires_the_row(
    alarm: Alarm, db_call: DbCall
) -> None:
    timers = await alarm.start()
    worker = alarm.workers[0]
    pk = await db_call(pending, alarm.at(1))
    await waited(timers.wait_scheduled(("action", pk)))

    def cut_timer_connections() -> int:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = 'alarm-worker-timers' AND datname = current_database()"
            )
            (count,) = cursor.fetchone() or (0,)
        return int(count)

    assert await db_call(cut_timer_connections) == timers.lanes.size
    alarm.clock.advance(1)
    with pytest.raises(psycopg.OperationalError):
        await waited(worker.tasks[1])  # the runner would restart it
    assert (await db_call(PendingAction.objects.get, pk=pk)).status == "scheduled"

    worker.tasks[1] = asyncio.create_task(timers.run(worker.stopping))
    await waited(timers.wait_outcomes("action.fired", 1))
    assert (await db_call(PendingAction.objects.get, pk=pk)).status == "fired"


async def test_actions_due_close_together_fire_once_each_over_the_lanes(
    alarm: Alarm, db_call: DbCall
) -> None:
    timers = await alarm.start()
    pks = [await db_call(pending, alarm.at(1 + n / 100)) for n in range(60)]
    await waited(timers.wait_scheduled(("action", pks[-1])))
    alarm.clock.advance(1)
    for handed in range(1, 60):
        # the next one comes due as soon as this one is handed to a lane, while its statement
        # may still run: it goes to the other lane or waits for a free one
        await waited(timers.wait_until(lambda: timers.lanes.submitted >= handed))  # noqa: B023
        alarm.clock.advance(0.01)
    await waited(timers.wait_outcomes("action.fired", 60))
    await quiet(alarm)
    statuses = await db_call(
        lambda: Counter(PendingAction.objects.filter(pk__in=pks).values_list("status", flat=True))
    )
    assert statuses == {"fired": 60}
    assert len(await db_call(events, "later")) == 60
    assert 1 <= timers.lanes.statements <= 60


async def test_its_connections_plan_once_before_any_timer_never_scan_and_commit_synchronously(
    alarm: Alarm,
) -> None:
    timers = await alarm.start()
    shown = []
    for conn in timers.lanes._all:  # the settings in force on each lane
        settings = {}
        for name in ("plan_cache_mode", "enable_seqscan", "jit", "synchronous_commit"):
            row = await (await conn.execute(f"SHOW {name}")).fetchone()
            settings[name] = row[0] if row else None
        cursor = await conn.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [statement for (statement,) in await cursor.fetchall()]
        settings["claim prepared"] = any("FOR UPDATE OF a" in text for text in prepared)
        shown.append(settings)
    expected = {"plan_cache_mode": "force_generic_plan", "enable_seqscan": "off", "jit": "off",
                "synchronous_commit": "on", "claim prepared": True}  # fmt: skip
    assert shown == [expected] * timers.lanes.size
