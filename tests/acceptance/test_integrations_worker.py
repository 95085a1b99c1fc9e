"""Two ``runworker`` processes: one holds the integrations, the other takes over on kill -9."""

from __future__ import annotations

import json
import time

import pytest
from django.conf import settings

from services import embedded
from services.integrations.models import IntegrationConfig
from tests.acceptance.conftest import Spawn, Worker, free_port
from tests.integration.integrations.brokers import Publisher, topic_prefix

pytestmark = [pytest.mark.acceptance, pytest.mark.django_db(transaction=True)]


def z2m_client(worker: Worker) -> dict | None:
    client: dict | None = worker.healthz()["components"]["zigbee2mqtt"]["client"]
    return client


def wait_received(worker: Worker, count: int, timeout: float = 10.0) -> dict:
    """The leader's Zigbee2MQTT health once it has received ``count`` messages."""
    deadline = time.monotonic() + timeout
    while True:  # reading /healthz of another process: there is nothing to wait on but it
        client = z2m_client(worker)
        if client is not None and client["received"] >= count:
            return client
        if time.monotonic() > deadline:
            raise AssertionError(f"{count} messages not received; health: {client}")
        time.sleep(0.05)


def wait_subscribed(worker: Worker, topic_filter: str) -> None:
    """Until the worker's broker acknowledged ``topic_filter`` (an ``mqtt.subscribed`` line)."""
    seen = 1
    while not any(topic_filter in line for line in worker.wait_count("mqtt.subscribed", seen)):
        seen += 1


def test_one_worker_ingests_and_the_other_takes_over_when_it_is_killed(
    spawn: Spawn, worker_env: dict[str, str]
) -> None:
    broker_url = settings.MQTT_URL or embedded.mqtt_url()
    base = topic_prefix()
    IntegrationConfig.objects.create(kind="zigbee2mqtt", settings={"base_topic": base})
    env = {**worker_env, "MQTT_URL": broker_url}
    first = spawn({**env, "WORKER_HEALTH_PORT": str(free_port())}, "--exclude", "cron,outbox")
    first.wait_event("leadership.acquired")
    first.wait_event("mqtt.connected")
    second = spawn({**env, "WORKER_HEALTH_PORT": str(free_port())}, "--exclude", "cron,outbox")
    second.wait_event("leadership.standby")
    first_id = first.healthz()["worker_id"]
    standby = second.healthz()["components"]
    assert standby["leadership"]["leader"] is False
    assert standby["leadership"]["holder"] == first_id
    assert standby["mqtt"]["running"] is False and standby["zigbee2mqtt"]["client"] is None

    publisher = Publisher(broker_url)
    try:
        wait_subscribed(first, f"{base}/#")
        for n in range(20):
            publisher.publish(f"{base}/door{n}", json.dumps({"contact": n % 2 == 0}))
        assert wait_received(first, 20)["received"] == 20
        assert z2m_client(second) is None  # the standby ingests nothing: no double ingestion
        assert second.count("mqtt.connected") == 0

        first.proc.kill()  # kill -9: the server ends its session, and releases the lock
        killed_at = time.monotonic()
        second.wait_event("leadership.acquired", timeout=15)
        second.wait_event("mqtt.connected", timeout=15)
        took = time.monotonic() - killed_at
        wait_subscribed(second, f"{base}/#")
        publisher.publish(f"{base}/door0", json.dumps({"contact": False}))
        assert wait_received(second, 1)["received"] >= 1
    finally:
        publisher.close()
    print(f"the standby held the integrations and MQTT {took:.2f} s after kill -9")
    assert second.healthz()["components"]["leadership"]["leader"] is True
