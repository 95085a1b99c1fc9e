"""The alarm's admin: pages load, rule errors per field, cancel, arm/disarm, settings."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from alarm import services
from alarm.models import AlarmSettings, Entity, PendingAction, Rule, RuleRuntime

pytestmark = pytest.mark.django_db

DOOR = "binary_sensor.front_door"


@pytest.fixture
def admin_client(client: Client, django_user_model: Any) -> Client:
    admin = django_user_model.objects.create_superuser("admin", "admin@example.com", None)
    client.force_login(admin)
    return client


def url(model: str, view: str = "changelist", *args: Any) -> str:
    return reverse(f"admin:alarm_{model}_{view}", args=args)


@pytest.mark.parametrize(
    "model",
    ["entity", "alarmevent", "rule", "ruleruntime", "pendingaction", "alarmstate",
     "alarmsettings", "ruleactionlog"],
)  # fmt: skip
def test_changelists_load(admin_client: Client, model: str) -> None:
    Entity.objects.create(entity_id=DOOR, state="on")
    rule = Rule.objects.create(name="r", conditions={"for": {"seconds": 5, "condition": {
        "entity_id": DOOR, "equals": "on"}}})  # fmt: skip
    PendingAction.objects.create(rule=rule, action={"type": "emit_event", "message": "m"},
                                 fire_at=timezone.now())  # fmt: skip
    assert RuleRuntime.objects.filter(rule=rule, status="scheduled").exists()
    assert admin_client.get(url(model)).status_code == 200


def test_rule_change_page_shows_refs_and_runtimes(admin_client: Client) -> None:
    Entity.objects.create(entity_id=DOOR, state="on")
    rule = Rule.objects.create(name="r", conditions={"entity_id": DOOR, "equals": "on"})
    response = admin_client.get(url("rule", "change", rule.pk))
    assert response.status_code == 200
    assert DOOR in response.content.decode()


def rule_form(**fields: Any) -> dict[str, Any]:
    data = {
        "name": "door", "enabled": "on", "conditions": json.dumps({"entity_id": DOOR,
        "equals": "on"}), "actions": json.dumps([{"type": "emit_event", "message": "m"}]),
        "cooldown_seconds": "0", "priority": "0",
        "entity_refs-TOTAL_FORMS": "0", "entity_refs-INITIAL_FORMS": "0",
        "runtimes-TOTAL_FORMS": "0", "runtimes-INITIAL_FORMS": "0",
    }  # fmt: skip
    data.update({k: json.dumps(v) if k in ("conditions", "actions") else v
                 for k, v in fields.items()})  # fmt: skip
    return data


def test_a_valid_rule_is_added(admin_client: Client) -> None:
    Entity.objects.create(entity_id=DOOR)
    response = admin_client.post(url("rule", "add"), rule_form())
    assert response.status_code == 302, response.context["adminform"].form.errors
    rule = Rule.objects.get()
    assert set(rule.entity_refs.values_list("entity_id", flat=True)) == {DOOR}


def test_a_bad_rule_shows_each_error_beside_its_field_and_saves_nothing(
    admin_client: Client,
) -> None:
    response = admin_client.post(
        url("rule", "add"),
        rule_form(
            conditions={"all": [{"entity_id": "binary_sensor.nowhere", "equals": "on"}]},
            actions=[{"type": "sms", "message": "x"},
                     {"type": "emit_event", "message": "x", "delay_seconds": 0}],
            cooldown_seconds="-1",
        ),
    )  # fmt: skip
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert errors["conditions"][0].startswith(
        "conditions.all[0].entity_id: unknown entity 'binary_sensor.nowhere'"
    )
    assert errors["actions"][0].startswith("actions[0].type: unknown action type 'sms'")
    assert errors["actions"][1].startswith("actions[1].delay_seconds: expected a whole number")
    assert "cooldown_seconds" in errors
    assert not Rule.objects.exists()


def test_disable_action_cancels_pending_actions(admin_client: Client) -> None:
    rule = Rule.objects.create(name="r")
    PendingAction.objects.create(rule=rule, action={"type": "emit_event", "message": "m"},
                                 fire_at=timezone.now() + timedelta(minutes=1))  # fmt: skip
    response = admin_client.post(url("rule"), {"action": "disable", "_selected_action": [rule.pk]})
    assert response.status_code == 302
    assert Rule.objects.get().enabled is False
    assert PendingAction.objects.get().status == "cancelled"


def test_pending_actions_are_cancelled_by_hand(admin_client: Client) -> None:
    later = timezone.now() + timedelta(minutes=5)
    rows = [PendingAction.objects.create(action={"type": "emit_event", "message": "m"},
                                         fire_at=later) for _ in range(3)]  # fmt: skip
    PendingAction.objects.filter(pk=rows[2].pk).update(status="fired")
    response = admin_client.post(
        url("pendingaction"),
        {"action": "cancel", "_selected_action": [r.pk for r in rows]},
    )
    assert response.status_code == 302
    statuses = dict(PendingAction.objects.values_list("pk", "status"))
    assert statuses == {rows[0].pk: "cancelled", rows[1].pk: "cancelled", rows[2].pk: "fired"}
    assert PendingAction.objects.get(pk=rows[0].pk).reason == "cancelled by hand (admin)"


def test_the_alarm_is_armed_and_disarmed_from_the_admin(admin_client: Client) -> None:
    AlarmSettings.objects.update_or_create(pk=1, defaults={"exit_delay_seconds": 0})
    admin_client.get(url("alarmstate"))  # makes the row if it is missing
    for action, expected in [("arm_away", "armed_away"), ("disarm", "disarmed")]:
        response = admin_client.post(url("alarmstate"), {"action": action,
                                                         "_selected_action": ["1"]})  # fmt: skip
        assert response.status_code == 302
        assert services.alarm_state_snapshot()["state"] == expected


def test_alarm_settings_refuse_delays_out_of_range(admin_client: Client) -> None:
    AlarmSettings.objects.update_or_create(pk=1)
    response = admin_client.post(
        url("alarmsettings", "change", 1),
        {"exit_delay_seconds": "601", "entry_delay_seconds": "30", "notify_on_trigger": "on",
         "trigger_message": "m"},
    )  # fmt: skip
    assert response.status_code == 200
    assert "exit_delay_seconds" in response.context["adminform"].form.errors
    assert AlarmSettings.objects.get().exit_delay_seconds == 60
