"""The whole chain, in real processes: a Zigbee2MQTT door sensor's message goes through the MQTT
broker into ``runworker``, becomes an entity state, starts a rule's "open for 1 s" timer that
fires with no other event, whose notification the outbox sends to a webhook; the entity and
alarm changes reach a WebSocket client of a real daphne through Redis.

This test process is the web side: it writes rows with the ORM, publishes like Zigbee2MQTT
does and reads the WebSocket like the status page does.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import pytest

from alarm import services
from alarm.models import AlarmSettings, Entity, Rule, RuleActionLog
from notifications.models import NotificationProvider
from realtime import tokens
from services.integrations.models import IntegrationConfig
from tests.acceptance.conftest import Spawn, ThreadedFakeProviders
from tests.integration.conftest import db_call, stores  # noqa: F401 - fixtures
from tests.integration.integrations.brokers import Publisher, topic_prefix
from tests.integration.integrations.conftest import broker_url, publisher  # noqa: F401 - fixtures
from tests.realtime_support import (  # noqa: F401 - fixtures
    ORIGIN,
    Daphne,
    daphne_fixture,
    make_user,
    realtime_group_fixture,
)

pytestmark = [pytest.mark.acceptance, pytest.mark.django_db(transaction=True)]

DOOR = "zigbee2mqtt.front_door"


def set_up(base_topic: str, webhook: dict[str, Any]) -> None:
    IntegrationConfig.objects.create(kind="zigbee2mqtt", settings={"base_topic": base_topic})
    NotificationProvider.objects.create(name="sink", type="webhook", config=webhook)
    AlarmSettings.objects.update_or_create(pk=1, defaults={"exit_delay_seconds": 1})
    Entity.objects.create(entity_id=DOOR, state="off", source="zigbee2mqtt")
    door_on = {"entity_id": DOOR, "equals": "on"}
    Rule.objects.create(
        name="front door left open",
        conditions={"for": {"seconds": 1, "condition": door_on}},
        actions=[{"type": "notify", "message": "Front door open", "provider": "sink"}],
    )


async def next_of(ws: aiohttp.ClientWebSocketResponse, kind: str, within: float = 15) -> Any:
    """The payload of the next message of type ``kind`` (others are skipped)."""
    while True:
        message = await ws.receive_json(timeout=within)
        if message["type"] == kind:
            return message["payload"]


async def test_a_door_left_open_notifies_and_every_change_is_pushed(
    spawn: Spawn,
    worker_env: dict[str, str],
    daphne: Daphne,
    realtime_group: str,
    broker_url: str,  # noqa: F811 - the fixture imported above
    publisher: Publisher,  # noqa: F811 - the fixture imported above
    fake_providers: ThreadedFakeProviders,
    db_call: Any,  # noqa: F811 - the fixture imported above
) -> None:
    base = topic_prefix()
    await db_call(set_up, base, fake_providers.config_for("webhook"))
    token = await db_call(tokens.make_token, await db_call(make_user))
    env = {
        **worker_env,
        "WORKER_TASK_MODULES": "",
        "REALTIME_GROUP": realtime_group,
        "MQTT_URL": broker_url,
        "OUTBOX_ALLOW_LOOPBACK": "true",
    }
    worker = spawn(env, "--exclude", "cron")
    await asyncio.to_thread(worker.wait_event, "mqtt.connected")
    await asyncio.to_thread(worker.wait_event, "alarm.timers_loaded")

    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"{daphne.ws}?token={token}", headers={"Origin": ORIGIN})
        assert (await next_of(ws, "alarm_state"))["state"] == "disarmed"
        await next_of(ws, "system_status")

        # Zigbee2MQTT reports the contact open: the entity changes, and the rule's timer starts.
        opened = time.monotonic()
        await asyncio.to_thread(
            publisher.publish, f"{base}/front_door", json.dumps({"contact": False})
        )
        entity = await next_of(ws, "entity_state")
        assert (entity["entity_id"], entity["state"], entity["source"]) == (
            DOOR,
            "on",
            "zigbee2mqtt",
        )

        # One second later, with no other event, the rule fires and the webhook is called.
        [request] = await asyncio.to_thread(fake_providers.wait_for, 1, 15)
        elapsed = time.monotonic() - opened
        assert 1.0 <= elapsed < 5.0, elapsed
        assert "Front door open" in request.body.decode()
        log = await db_call(lambda: RuleActionLog.objects.get())
        assert log.source == "timer"

        # Arming from the web side: arming now, armed_away when the worker's exit delay ends.
        await db_call(services.arm, "armed_away")
        assert (await next_of(ws, "alarm_state"))["state"] == "arming"
        assert (await next_of(ws, "alarm_state"))["state"] == "armed_away"
        await ws.close()
    await asyncio.to_thread(worker.wait_event, "outbox.sent")
