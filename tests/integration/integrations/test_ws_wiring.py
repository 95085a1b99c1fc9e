"""The Home Assistant and Z-Wave JS clients in the integrations wrapper: their settings built
from a configuration, and the periodic Home Assistant sync, which runs only while Home
Assistant is configured and writes what differs through ``alarm.services``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import connections

from alarm.models import Entity
from services.clock import FakeClock
from services.integrations import home_assistant, tasks, zwavejs
from services.integrations.config_spec import EffectiveConfig, spec_for
from services.integrations.home_assistant import HomeAssistantClient, HomeAssistantSettings
from services.integrations.models import IntegrationConfig
from services.integrations.wiring import client_types
from services.integrations.zwavejs import ZwaveJsClient, ZwaveJsSettings
from services.worker import WorkerContext
from tests.fakes.home_assistant_server import FakeHomeAssistant, running_fake_home_assistant


def effective(kind: str, **values: Any) -> EffectiveConfig:
    return EffectiveConfig(kind, True, True, {**spec_for(kind).defaults(), **values}, "row")


def test_the_builders_fill_the_clients_settings() -> None:
    ha = home_assistant.settings_from(
        effective("home_assistant", url="http://ha:8123", token="t", include=["binary_sensor.*"])
    )
    assert ha == HomeAssistantSettings(
        "http://ha:8123", "t", include=("binary_sensor.*",), auth_retry_interval=None
    )
    retrying = effective("home_assistant", url="http://ha", token="t", auth_retry_interval=300)
    assert home_assistant.settings_from(retrying).auth_retry_interval == 300.0
    zw = zwavejs.settings_from(effective("zwavejs", url="ws://z:3000", verify_tls=False))
    assert zw == ZwaveJsSettings("ws://z:3000", verify_tls=False)


def test_an_unusable_configuration_is_a_value_error_naming_the_field() -> None:
    with pytest.raises(ValueError, match="token"):
        home_assistant.settings_from(effective("home_assistant", url="http://ha:8123"))


def test_both_clients_are_client_types_of_the_wrapper() -> None:
    ctx = WorkerContext("w1", FakeClock(), None, None, None, [])  # type: ignore[arg-type]
    by_kind = {t.kind: t for t in client_types(ctx)}
    assert set(by_kind) == {"mqtt", "zigbee2mqtt", "frigate", "home_assistant", "zwavejs"}
    ha = by_kind["home_assistant"]
    settings = ha.build_settings(effective("home_assistant", url="http://ha:8123", token="t"))
    client = ha.factory(settings, clock=ctx.clock, report=lambda *a, **k: None, on_state=None)
    assert isinstance(client, HomeAssistantClient)
    assert by_kind["zwavejs"].factory is ZwaveJsClient


@pytest.mark.django_db
def test_the_sync_runs_only_while_home_assistant_is_configured() -> None:
    assert tasks.home_assistant_active() is False
    row = IntegrationConfig.objects.create(
        kind="home_assistant", settings={"url": "http://ha:8123", "token": "secret-token"}
    )
    assert tasks.home_assistant_active() is True
    row.enabled = False
    row.save()
    assert tasks.home_assistant_active() is False


@pytest.mark.django_db
def test_the_sync_skips_when_the_configuration_went_away() -> None:
    assert tasks.sync_entity_states() == {"skipped": "Home Assistant is not configured"}


@pytest.fixture
async def ha() -> AsyncIterator[FakeHomeAssistant]:
    async with running_fake_home_assistant() as fake:
        yield fake


@pytest.mark.django_db(transaction=True)
async def test_the_sync_writes_only_what_differs(ha: FakeHomeAssistant, db_call: Any) -> None:
    def setup() -> None:
        IntegrationConfig.objects.create(
            kind="home_assistant", settings={"url": ha.url, "token": ha.token}
        )
        Entity.objects.create(entity_id="binary_sensor.door", state="off", source="home_assistant")
        Entity.objects.create(entity_id="lock.back", state="locked", source="home_assistant")

    await db_call(setup)
    ha.set_state("binary_sensor.door", "on", {"friendly_name": "Door"})
    ha.set_state("lock.back", "locked", {})
    ha.set_state("sensor.power", "230", {"unit_of_measurement": "W"})

    def run_task() -> dict[str, Any]:
        # As the worker runs a sync task: in a thread of its own, closing its connections.
        try:
            return tasks.sync_entity_states()
        finally:
            connections.close_all()

    result = await sync_to_async(run_task, thread_sensitive=False)()

    assert result["changed"] == 2, result  # the door, and the new power sensor
    states = await db_call(lambda: dict(Entity.objects.values_list("entity_id", "state")))
    assert states == {"binary_sensor.door": "on", "lock.back": "locked", "sensor.power": "230"}
