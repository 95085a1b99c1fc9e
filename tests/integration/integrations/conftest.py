from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

from services import embedded
from tests.integration.integrations.brokers import MOSQUITTO, PrivateBroker, Publisher


@pytest.fixture(scope="session")
def broker_url() -> str:
    """The shared broker: MQTT_URL (the machine's Mosquitto), else the embedded amqtt one."""
    return settings.MQTT_URL or embedded.mqtt_url()


@pytest.fixture
def publisher(broker_url: str) -> Iterator[Publisher]:
    client = Publisher(broker_url)
    yield client
    client.close()


@pytest.fixture
def private_broker(tmp_path: Path) -> Iterator[PrivateBroker]:
    """A broker of this test alone (mosquitto, or amqtt where mosquitto is missing), started."""
    broker = PrivateBroker(tmp_path)
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def mosquitto_only() -> None:
    if MOSQUITTO is None:
        pytest.skip("needs the mosquitto binary (installed here and in CI)")
