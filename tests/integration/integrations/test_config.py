"""Integration configurations: secrets at rest and in the admin, validation, environment
defaults, the NOTIFY trigger, and a change restarting only that integration's component."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test import Client
from django.urls import reverse

from services import db
from services.clock import FakeClock
from services.dbthread import AsyncStore
from services.integrations import config, frigate, mqtt_settings, zigbee2mqtt
from services.integrations.component import ClientType, IntegrationComponent
from services.integrations.config_spec import EMBEDDED_URL
from services.integrations.leadership import Leadership
from services.integrations.models import IntegrationConfig
from services.listener import Listener
from tests.fakes.recorders import Recorder

PASSWORD = "broker-password-1234"


def raw_settings(row: IntegrationConfig) -> dict[str, Any]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT settings::text FROM integrations_integrationconfig WHERE id = %s", [row.pk]
        )
        return dict(json.loads(cursor.fetchone()[0]))


# --- the model -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_secrets_are_encrypted_at_rest_and_decrypted_for_the_client() -> None:
    row = IntegrationConfig.objects.create(
        kind="mqtt", settings={"url": "mqtt://broker", "password": PASSWORD}
    )
    stored = raw_settings(row)
    assert stored["url"] == "mqtt://broker" and stored["password"].startswith("enc:v1:")
    assert PASSWORD not in json.dumps(stored)
    fresh = IntegrationConfig.objects.get(pk=row.pk)
    assert fresh.plain_settings()["password"] == PASSWORD
    assert fresh.masked_settings()["password"] == "••••1234"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("kind", "settings", "messages"),
    [
        ("mqtt", {"url": "http://x"}, ["settings.url: must look like mqtt://host:port"]),
        ("mqtt", {"keepalive": 1, "bogus": 1},
         ["settings.bogus: unknown field", "settings.keepalive: must be between 5 and 3600"]),
        ("home_assistant", {"url": "http://ha:8123"}, ["settings.token: is required"]),
        ("zigbee2mqtt", ["not", "an", "object"], ["settings: must be a JSON object"]),
    ],
)  # fmt: skip
def test_clean_reports_each_field(kind: str, settings: Any, messages: list[str]) -> None:
    with pytest.raises(ValidationError) as error:
        IntegrationConfig(kind=kind, settings=settings).full_clean()
    found = error.value.message_dict["settings"]
    assert len(found) == len(messages)
    for line, fragment in zip(found, messages, strict=True):
        assert line.startswith(fragment)


# --- effective configuration -------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("env", "embedded", "row", "expected"),
    [
        ("mqtt://env:1883", False, None, ("environment", True, True, "mqtt://env:1883")),
        ("", True, None, ("environment", True, True, EMBEDDED_URL)),
        ("", False, None, ("none", False, False, "")),
        ("mqtt://env:1883", False, {"url": "mqtt://row:1883"}, ("row", True, True, "mqtt://row:1883")),
        ("mqtt://env:1883", False, {"keepalive": 30}, ("row", True, True, "mqtt://env:1883")),
        ("mqtt://env:1883", False, {"enabled": False}, ("row", True, False, "mqtt://env:1883")),
    ],
)  # fmt: skip
def test_load_mqtt_with_environment_defaults(
    settings: Any,
    env: str,
    embedded: bool,
    row: dict[str, Any] | None,
    expected: tuple[str, bool, bool, str],
) -> None:
    settings.MQTT_URL, settings.EMBEDDED_MQTT = env, embedded
    if row is not None:
        enabled = row.pop("enabled", True)
        IntegrationConfig.objects.create(kind="mqtt", enabled=enabled, settings=row)
    loaded = config.load("mqtt")
    assert (loaded.source, loaded.configured, loaded.enabled, loaded.values["url"]) == expected
    assert loaded.values["keepalive"] == (row or {}).get("keepalive", 60)


@pytest.mark.django_db
def test_load_reports_a_row_that_bypassed_validation() -> None:
    IntegrationConfig.objects.create(kind="zigbee2mqtt", settings={})
    IntegrationConfig.objects.filter(kind="zigbee2mqtt").update(settings={"base_topic": "a/#"})
    loaded = config.load("zigbee2mqtt")
    assert loaded.configured and not loaded.active
    assert loaded.error is not None and loaded.error.startswith("base_topic: must not contain")


@pytest.mark.django_db
def test_layers_without_a_row_are_not_configured() -> None:
    assert not config.load("zigbee2mqtt").configured
    assert not config.load("frigate").configured
    IntegrationConfig.objects.create(kind="frigate", settings={})
    assert config.load("frigate").active
    assert config.load("frigate").values["topic_prefix"] == "frigate"


# --- the admin -----------------------------------------------------------------------------


@pytest.fixture
def admin_client(client: Client, django_user_model: Any) -> Client:
    admin = django_user_model.objects.create_superuser("admin", "admin@example.com", None)
    client.force_login(admin)
    return client


@pytest.mark.django_db
def test_the_admin_masks_secrets_and_keeps_them_when_left_masked(admin_client: Client) -> None:
    row = IntegrationConfig.objects.create(
        kind="mqtt", settings={"url": "mqtt://broker", "password": PASSWORD}
    )
    url = reverse("admin:integrations_integrationconfig_change", args=[row.pk])
    page = admin_client.get(url).content.decode()
    assert PASSWORD not in page and "enc:v1:" not in page and "••••1234" in page
    listing = admin_client.get(reverse("admin:integrations_integrationconfig_changelist"))
    assert PASSWORD not in listing.content.decode() and "password: yes" in listing.content.decode()
    submitted = {"url": "mqtt://other", "password": "••••1234"}
    response = admin_client.post(
        url, {"kind": "mqtt", "enabled": "on", "settings": json.dumps(submitted)}
    )
    assert response.status_code == 302
    row.refresh_from_db()
    assert row.plain_settings() == {"url": "mqtt://other", "password": PASSWORD}


@pytest.mark.django_db
def test_the_admin_shows_field_errors(admin_client: Client) -> None:
    response = admin_client.post(
        reverse("admin:integrations_integrationconfig_add"),
        {"kind": "mqtt", "enabled": "on", "settings": '{"keepalive": "often"}'},
    )
    assert response.status_code == 200
    assert "settings.keepalive: must be a whole number" in response.content.decode()
    assert not IntegrationConfig.objects.exists()


# --- NOTIFY and restarts -------------------------------------------------------------------


def listen_once(channel: str) -> psycopg.Connection[Any]:
    conn = psycopg.connect(db.conninfo("test-listen"), autocommit=True)
    conn.execute(f"LISTEN {channel}")
    return conn


@pytest.mark.django_db(transaction=True)
def test_every_change_notifies_the_kind() -> None:
    with listen_once("integrations_config") as conn:
        row = IntegrationConfig.objects.create(kind="frigate", settings={})
        row.enabled = False
        row.save()
        row.delete()
        payloads = [n.payload for n in conn.notifies(timeout=5, stop_after=3)]
    assert payloads == ["frigate", "frigate", "frigate"]


class RecordingClient:
    started: Recorder[Any] = Recorder()  # the settings each run() began with

    def __init__(self, settings: Any, *, clock: Any, report: Any, on_state: Any) -> None:
        self.settings = settings

    async def run(self, stopping: asyncio.Event) -> None:
        RecordingClient.started.record(self.settings)
        await stopping.wait()

    def health(self) -> dict[str, Any]:
        return {}


@dataclass
class Worker:
    components: dict[str, IntegrationComponent]
    loads: Recorder[str]
    db: AsyncStore

    def starts(self) -> dict[str, int]:
        return {name: c.starts for name, c in self.components.items()}


@pytest.fixture
async def worker(settings: Any) -> AsyncIterator[Worker]:
    """The integration components of one worker: the real listener, leadership and config
    loading, with recording clients in place of the real ones."""
    settings.MQTT_URL = "mqtt://127.0.0.1:1"
    RecordingClient.started = Recorder()
    store, listener, loads = AsyncStore(), Listener(), Recorder[str]()
    leadership = Leadership("worker-a", key=secrets.randbits(62))

    async def load(kind: str) -> config.EffectiveConfig:
        loaded = await store.call(config.load, kind)
        loads.record(kind)
        return loaded

    builders = {
        "mqtt": mqtt_settings.settings_from,
        "zigbee2mqtt": zigbee2mqtt.settings_from,
        "frigate": frigate.settings_from,
    }
    components = {
        kind: IntegrationComponent(
            ClientType(kind, RecordingClient, build), leadership=leadership, load=load,
            subscribe=listener.subscribe, clock=FakeClock(), report=lambda *a, **k: None,
            on_state=no_states,
        )
        for kind, build in builders.items()
    }  # fmt: skip
    stopping = asyncio.Event()
    runs = [listener.run(stopping), leadership.run(stopping)]
    tasks = [asyncio.create_task(run) for run in runs]
    tasks += [asyncio.create_task(c.run(stopping)) for c in components.values()]
    try:
        async with asyncio.timeout(10):
            await listener.ready.wait()
        yield Worker(components, loads, store)
    finally:
        stopping.set()
        async with asyncio.timeout(10):
            await asyncio.gather(*tasks)
        await store.close()


async def no_states(*args: Any, **kwargs: Any) -> bool:
    raise AssertionError("no entity states in this test")


def save(kind: str, **settings: Any) -> None:
    IntegrationConfig.objects.update_or_create(kind=kind, defaults={"settings": settings})


@pytest.mark.django_db(transaction=True)
async def test_a_change_restarts_only_that_integration(worker: Worker) -> None:
    await worker.db.call(save, "zigbee2mqtt", base_topic="z1")
    await worker.db.call(save, "frigate")
    await RecordingClient.started.wait_for(lambda: len(RecordingClient.started.calls) == 3)
    assert worker.starts() == {"mqtt": 1, "zigbee2mqtt": 1, "frigate": 1}
    await worker.db.call(save, "zigbee2mqtt", base_topic="z2")
    await RecordingClient.started.wait_for(lambda: len(RecordingClient.started.calls) == 4)
    assert RecordingClient.started.calls[-1] == zigbee2mqtt.Zigbee2MqttSettings(base_topic="z2")
    assert worker.starts() == {"mqtt": 1, "zigbee2mqtt": 2, "frigate": 1}
    # Saving what is already there, or a field equal to its default, restarts nothing.
    loads = worker.loads.calls.count("zigbee2mqtt")
    await worker.db.call(save, "zigbee2mqtt", base_topic="z2", stale_after=75)
    await worker.loads.wait_for(lambda: worker.loads.calls.count("zigbee2mqtt") > loads)
    # A row for MQTT equal to the environment default changes nothing either.
    await worker.db.call(save, "mqtt", url="mqtt://127.0.0.1:1")
    await worker.loads.wait_for(lambda: "mqtt" in worker.loads.calls[-1:])
    assert worker.starts() == {"mqtt": 1, "zigbee2mqtt": 2, "frigate": 1}
