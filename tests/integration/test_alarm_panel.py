"""The alarm panel with its timer on real PostgreSQL: exit and entry delays end on time (a
fake clock), entering triggered notifies every enabled provider, a disarm cancels the actions
scheduled while armed."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from alarm import services
from alarm.models import AlarmEvent, AlarmSettings, AlarmState, PendingAction
from tests.integration.alarm_support import (
    DOOR_OPEN,
    Alarm,
    DbCall,
    alarm,
    event_action,
    make_rule,
    quiet,
    waited,
)

pytestmark = pytest.mark.django_db(transaction=True)
__all__ = ["alarm"]

ALARM_KEY = ("alarm", 1)


def settings(exit_delay: int, entry_delay: int, **fields: Any) -> None:
    AlarmSettings.objects.update_or_create(
        pk=1,
        defaults={"exit_delay_seconds": exit_delay, "entry_delay_seconds": entry_delay, **fields},
    )


def state() -> str:
    return services.alarm_state_snapshot()["state"]


def transitions() -> list[tuple[str, str, str]]:
    return list(
        AlarmEvent.objects.order_by("timestamp", "id").values_list(
            "event_type", "state_from", "state_to"
        )
    )


def providers() -> None:
    from notifications.models import NotificationProvider

    for name, enabled in [("phone", True), ("slack", True), ("old", False)]:
        NotificationProvider.objects.create(
            name=name, type="webhook", enabled=enabled, config={"url": f"https://e.com/{name}"}
        )


def deliveries() -> list[tuple[str, str]]:
    from notifications.models import NotificationDelivery

    return sorted(NotificationDelivery.objects.values_list("provider__name", "message"))


async def test_the_exit_delay_ends_in_armed(alarm: Alarm, db_call: DbCall) -> None:
    timers = await alarm.start()
    await db_call(settings, 30, 20)
    await db_call(services.arm, "armed_away", source="test", at=alarm.at(0))
    snapshot = await db_call(services.alarm_state_snapshot)
    assert snapshot["state"] == "arming"
    assert snapshot["delay"] == {"kind": "exit", "until": alarm.at(30).isoformat(), "seconds": 30}
    await waited(timers.wait_scheduled(ALARM_KEY, alarm.at(30)))

    alarm.clock.advance(29.999)
    await quiet(alarm)
    assert await db_call(state) == "arming"
    alarm.clock.advance(0.001)
    await waited(timers.wait_outcomes("alarm.armed_away", 1))
    row = await db_call(AlarmState.objects.get)
    assert (row.state, row.previous_state, row.changed_at, row.delay_until) == (
        "armed_away", "arming", alarm.at(30), None,
    )  # fmt: skip
    assert row.changed_by == "timer"
    assert await db_call(transitions) == [
        ("arming", "disarmed", "arming"), ("armed", "arming", "armed_away"),
    ]  # fmt: skip
    await waited(timers.wait_until(lambda: ALARM_KEY not in timers.timers))


async def test_the_entry_delay_ends_in_triggered_and_notifies(
    alarm: Alarm, db_call: DbCall
) -> None:
    timers = await alarm.start()
    await db_call(settings, 0, 20, trigger_message="Intrusion!")
    await db_call(providers)
    await db_call(services.arm, "armed_night", at=alarm.at(0))  # no exit delay
    assert await db_call(state) == "armed_night"
    await db_call(services.trip, source="sensor", at=alarm.at(1))
    assert await db_call(state) == "pending"
    await waited(timers.wait_scheduled(ALARM_KEY, alarm.at(21)))

    alarm.clock.advance(20.999)
    await quiet(alarm)
    assert await db_call(deliveries) == []
    alarm.clock.advance(0.001)
    await waited(timers.wait_outcomes("alarm.triggered", 1))
    assert await db_call(state) == "triggered"
    # every enabled provider, once
    assert await db_call(deliveries) == [("phone", "Intrusion!"), ("slack", "Intrusion!")]
    assert (await db_call(transitions))[-1] == ("triggered", "pending", "triggered")


async def test_a_disarm_during_the_entry_delay_stops_it(alarm: Alarm, db_call: DbCall) -> None:
    timers = await alarm.start()
    await db_call(settings, 0, 20)
    await db_call(services.arm, "armed_home", at=alarm.at(0))
    await db_call(services.trip, at=alarm.at(0))
    await waited(timers.wait_scheduled(ALARM_KEY))
    await db_call(services.disarm, at=alarm.at(5))
    await waited(timers.wait_until(lambda: ALARM_KEY not in timers.timers))
    alarm.clock.advance(30)
    await quiet(alarm)
    assert await db_call(state) == "disarmed"
    assert timers.outcomes == Counter()


async def test_a_disarm_cancels_the_actions_scheduled_while_armed(
    alarm: Alarm, db_call: DbCall
) -> None:
    timers = await alarm.start()
    await db_call(settings, 0, 20)
    rule = await db_call(make_rule, DOOR_OPEN, [{**event_action(), "delay_seconds": 60}])

    def door(state: str) -> None:
        services.update_entity_state(
            DOOR_OPEN["entity_id"], state, source="manual", at=alarm.clock.now()
        )

    await db_call(door, "on")  # disarmed: the delayed action is not "armed"
    await db_call(door, "off")
    await db_call(services.arm, "armed_away", at=alarm.at(0))
    await db_call(door, "on")  # armed: this one is
    rows = {r.while_armed: r.pk for r in await db_call(lambda: list(PendingAction.objects.all()))}
    await waited(timers.wait_until(lambda: len(timers.timers) == 2))

    await db_call(services.disarm, at=alarm.at(1))
    await waited(timers.wait_until(lambda: ("action", rows[True]) not in timers.timers))
    by_pk = {r.pk: r for r in await db_call(lambda: list(PendingAction.objects.all()))}
    assert (by_pk[rows[True]].status, by_pk[rows[True]].reason) == ("cancelled", "disarmed")
    assert by_pk[rows[False]].status == "scheduled"
    assert by_pk[rows[False]].rule_id == rule.pk
    alarm.clock.advance(60)
    await waited(timers.wait_outcomes("action.fired", 1))  # the disarmed-time one still fires


async def test_a_rule_can_arm_the_panel_after_a_delay(alarm: Alarm, db_call: DbCall) -> None:
    timers = await alarm.start()
    await db_call(settings, 10, 20)
    await db_call(make_rule, DOOR_OPEN, [{"type": "set_alarm_state", "state": "armed_away",
                                          "delay_seconds": 5}])  # fmt: skip
    await db_call(
        services.update_entity_state, DOOR_OPEN["entity_id"], "on", source="manual",
        at=alarm.clock.now(),
    )  # fmt: skip
    await waited(timers.wait_until(lambda: len(timers.timers) == 1))
    alarm.clock.advance(5)
    await waited(timers.wait_outcomes("action.fired", 1))  # through the ORM path
    assert await db_call(state) == "arming"
    await waited(timers.wait_scheduled(ALARM_KEY, alarm.at(15)))
    alarm.clock.advance(10)
    await waited(timers.wait_outcomes("alarm.armed_away", 1))
    assert await db_call(state) == "armed_away"
