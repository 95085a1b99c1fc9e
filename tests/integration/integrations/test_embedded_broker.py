"""The embedded amqtt broker: started once under a lock, kept running, stopped by ``embedded
stop``; and the MQTT client reaching it when no broker URL is configured."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from services import embedded
from services.clock import RealClock
from services.integrations.mqtt import MqttClient, MqttHub
from services.integrations.mqtt_settings import MqttSettings
from tests.fakes.recorders import RecordingReport
from tests.integration.integrations.brokers import listening


@pytest.fixture
def local_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The embedded servers' data directory, in this test's temp dir."""
    monkeypatch.setattr(embedded, "LOCAL_DIR", tmp_path)
    monkeypatch.setattr(embedded, "MQTT_DIR", tmp_path / "mqtt")
    monkeypatch.delenv(embedded.MQTT_PORT_ENV, raising=False)
    yield tmp_path
    embedded.stop_mqtt()


def mqtt_status() -> embedded.ServerStatus:
    return next(s for s in embedded.status() if s.name.startswith("MQTT"))


def test_starts_once_keeps_running_and_stops(local_dir: Path) -> None:
    assert not mqtt_status().running
    url = embedded.mqtt_url()
    port = int(url.rsplit(":", 1)[1])
    pid = mqtt_status().pid
    assert listening(port) and mqtt_status().running and mqtt_status().url == url
    assert embedded.mqtt_url() == url and mqtt_status().pid == pid  # the running one, reused
    assert (local_dir / "mqtt" / "amqtt.yaml").exists()
    assert embedded.stop_mqtt() is True
    assert not mqtt_status().running and not listening(port)
    assert embedded.stop_mqtt() is False
    assert embedded.mqtt_url() == url  # started again on the same port, while it is free


def test_stop_never_signals_a_process_that_is_not_our_broker(local_dir: Path) -> None:
    (local_dir / "mqtt").mkdir()
    (local_dir / "mqtt" / "broker.pid").write_text(f"{os.getpid()}\n")
    (local_dir / "mqtt" / "port").write_text("1\n")
    assert embedded.stop_mqtt() is False  # our own pid: not an amqtt with our config


def test_a_fixed_port_from_the_environment(
    local_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.integration.integrations.brokers import free_port

    port = free_port()
    monkeypatch.setenv(embedded.MQTT_PORT_ENV, str(port))
    assert embedded.mqtt_url() == f"mqtt://127.0.0.1:{port}"
    monkeypatch.setenv(embedded.MQTT_PORT_ENV, "http")
    embedded.stop_mqtt()
    with pytest.raises(embedded.EmbeddedServerError, match="must be a port number"):
        embedded.mqtt_url()


async def test_the_client_starts_and_reaches_the_embedded_broker(local_dir: Path) -> None:
    report, stopping = RecordingReport(), asyncio.Event()
    settings = MqttSettings(embedded=True, protocol="3.1.1", connect_timeout=2.0)
    client = MqttClient(
        settings, clock=RealClock(), report=report, hub=MqttHub(), worker_id="w",
        resolve_embedded=embedded.mqtt_url,
    )  # fmt: skip
    task = asyncio.create_task(client.run(stopping))
    try:
        await report.wait_for_event("connected", integration="mqtt")
    finally:
        stopping.set()
        async with asyncio.timeout(10):
            await task
    details = report.calls[1].details
    assert details is not None
    assert details["embedded"] is True and details["protocol"] == "3.1.1"
    assert details["broker"] == embedded.mqtt_url().removeprefix("mqtt://")
