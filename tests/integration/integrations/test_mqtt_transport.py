"""The MQTT transport against real brokers: status events, reconnects, fallback, routing."""

from __future__ import annotations

import asyncio
import logging
import shutil
import signal
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from services.clock import FakeClock, RealClock
from services.integrations.mqtt import MqttClient, MqttHub
from services.integrations.mqtt_settings import MqttSettings, parse_url
from tests.fakes.recorders import RecordingReport
from tests.fakes.waitable import TIMEOUT
from tests.integration.integrations.brokers import (
    PrivateBroker,
    Publisher,
    free_port,
    make_certificates,
    topic_prefix,
)


def settings_for(url: str, **changes: Any) -> MqttSettings:
    parts = parse_url(url)
    base = MqttSettings(
        host=parts["host"], port=parts["port"], tls=parts["tls"], connect_timeout=2.0
    )
    return replace(base, **changes)


class Running:
    """A client's run() as a task; stopped (and awaited) at the end of the test."""

    def __init__(self) -> None:
        self.stopping = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []

    def start(self, client: MqttClient) -> MqttClient:
        self.tasks.append(asyncio.create_task(client.run(self.stopping)))
        return client

    async def stop(self) -> None:
        self.stopping.set()
        async with asyncio.timeout(TIMEOUT):
            await asyncio.gather(*self.tasks)


@pytest.fixture
async def running() -> AsyncIterator[Running]:
    runs = Running()
    yield runs
    await runs.stop()


async def subscribed(client: MqttClient, *filters: str) -> None:
    """Until the broker acknowledged ``filters`` on the client's current connection."""
    async with asyncio.timeout(TIMEOUT):
        while not set(filters) <= client.subscribed:
            await client.subscribed_changed.wait()


class Inbox:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()

    def __call__(self, topic: str, payload: bytes) -> None:
        self.queue.put_nowait((topic, payload))

    async def next(self) -> tuple[str, bytes]:
        async with asyncio.timeout(TIMEOUT):
            return await self.queue.get()


def make_client(
    settings: MqttSettings, report: RecordingReport, hub: MqttHub, clock: Any = None
) -> MqttClient:
    return MqttClient(
        settings, clock=clock or RealClock(), report=report, hub=hub, worker_id="test-worker"
    )


async def test_connects_reports_and_routes_messages_to_handlers(
    broker_url: str, publisher: Publisher, running: Running
) -> None:
    prefix, report, hub, inbox = topic_prefix(), RecordingReport(), MqttHub(), Inbox()
    other = Inbox()
    hub.subscribe(f"{prefix}/a/#", inbox)
    hub.subscribe(f"{prefix}/b/+", other)
    client = running.start(make_client(settings_for(broker_url), report, hub))
    await subscribed(client, f"{prefix}/a/#", f"{prefix}/b/+")
    publisher.publish(f"{prefix}/a/x/y", b"one")
    publisher.publish(f"{prefix}/b/z", b"two")
    assert await inbox.next() == (f"{prefix}/a/x/y", b"one")
    assert await other.next() == (f"{prefix}/b/z", b"two")
    assert report.events("mqtt")[-2:] == ["connecting", "connected"]
    details = report.last.details
    assert details is not None
    assert details["client_id"] == client.client_id and "password" not in details
    health = client.health()
    assert health["state"] == "connected" and health["received"] == 2
    await running.stop()
    last = report.last
    assert (last.integration, last.event, last.error) == ("mqtt", "disconnected", "stopped")


async def test_broker_stop_and_start_flip_the_status_and_restore_subscriptions(
    private_broker: PrivateBroker, running: Running
) -> None:
    prefix, report, hub, inbox, clock = (
        topic_prefix(),
        RecordingReport(),
        MqttHub(),
        Inbox(),
        FakeClock(),
    )
    hub.subscribe(f"{prefix}/#", inbox)
    client = running.start(make_client(settings_for(private_broker.url), report, hub, clock))
    await subscribed(client, f"{prefix}/#")
    private_broker.stop()
    await report.wait_for_event("disconnected", integration="mqtt")
    [error] = report.errors("disconnected", integration="mqtt")
    assert error  # "connection lost", or the broker's DISCONNECT reason
    assert client.health()["state"] in ("disconnected", "backoff") and not client.subscribed
    private_broker.start()
    await clock.wait_for_sleepers(1)  # the reconnect backoff sleeps on the injected clock
    clock.advance(1.0)
    await report.wait_for_event("connected", 2, integration="mqtt")
    await subscribed(client, f"{prefix}/#")  # restored on the new connection
    publisher = Publisher(private_broker.url)
    try:
        publisher.publish(f"{prefix}/after", b"back")
    finally:
        publisher.close()
    assert await inbox.next() == (f"{prefix}/after", b"back")
    assert report.events("mqtt") == [
        "connecting", "connected", "disconnected", "connecting", "connected"
    ]  # fmt: skip
    assert client.health()["connects"] == 2


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
async def test_a_stopped_broker_is_reported_at_once_not_after_a_keepalive(
    private_broker: PrivateBroker, running: Running, signum: signal.Signals
) -> None:
    """The broker's socket closing (clean stop or kill -9) is the event: no keepalive wait."""
    report = RecordingReport()
    protocol = "3.1.1" if private_broker.kind == "amqtt" else "auto"  # amqtt has no MQTT 5
    settings = settings_for(private_broker.url, keepalive=60, protocol=protocol)
    running.start(make_client(settings, report, MqttHub(), FakeClock()))
    await report.wait_for_event("connected", integration="mqtt")
    stopped = time.monotonic()
    private_broker.stop(signum)
    # A keepalive would take a minute at least: a ping after 60 s of quiet, then its answer.
    async with asyncio.timeout(5):
        await report.wait_for_event("disconnected", integration="mqtt")
    print(f"disconnected reported {1000 * (time.monotonic() - stopped):.0f} ms after {signum.name}")
    events = report.events("mqtt")  # amqtt: "connecting" twice (the 3.1.1 fallback)
    assert events[-2:] == ["connected", "disconnected"] and events.count("disconnected") == 1


async def test_an_unreachable_broker_is_retried_with_a_doubling_backoff(
    running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="services.integrations.mqtt")
    report, clock = RecordingReport(), FakeClock()
    settings = settings_for(f"mqtt://127.0.0.1:{free_port()}", reconnect_min=1, reconnect_max=4)
    running.start(make_client(settings, report, MqttHub(), clock))
    for _ in range(4):
        await clock.wait_for_sleepers(1)
        clock.advance(4.0)
    await clock.wait_for_sleepers(1)
    delays = [
        getattr(r, "delay", None)
        for r in caplog.records
        if getattr(r, "event", "") == "mqtt.reconnect_scheduled"
    ]
    assert delays == [1, 2, 4, 4, 4]
    assert report.events("mqtt")[:2] == ["connecting", "disconnected"]
    assert "cannot connect" in str(report.errors("disconnected", integration="mqtt")[0])


async def test_falls_back_to_mqtt_3_1_1_for_a_broker_without_5(
    tmp_path: Path, running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    broker = PrivateBroker(tmp_path, "amqtt")
    broker.start()
    try:
        prefix, report, hub, inbox = topic_prefix(), RecordingReport(), MqttHub(), Inbox()
        hub.subscribe(f"{prefix}/#", inbox)
        client = running.start(
            make_client(settings_for(broker.url, connect_timeout=1), report, hub)
        )
        await subscribed(client, f"{prefix}/#")
        assert client.health()["protocol"] == "3.1.1"
        assert any(getattr(r, "event", "") == "mqtt.protocol_fallback" for r in caplog.records)
        publisher = Publisher(broker.url)
        try:
            publisher.publish(f"{prefix}/x", b"hello")
        finally:
            publisher.close()
        assert await inbox.next() == (f"{prefix}/x", b"hello")
        await running.stop()
    finally:
        broker.stop()


@pytest.mark.usefixtures("mosquitto_only")
async def test_refused_credentials_are_auth_failed_without_a_reconnect_storm(
    tmp_path: Path, running: Running
) -> None:
    broker = PrivateBroker(tmp_path, "mosquitto", anonymous=False)
    broker.start()
    try:
        report, clock = RecordingReport(), FakeClock()
        settings = settings_for(broker.url, username="nobody", password="wrong")
        running.start(make_client(settings, report, MqttHub(), clock))
        await report.wait_for_event("auth_failed", integration="mqtt")
        await clock.wait_for_sleepers(1)  # backing off, not retrying at once
        assert report.events("mqtt") == ["connecting", "auth_failed"]
        assert "Not authorized" in str(report.errors("auth_failed", integration="mqtt")[0])
    finally:
        await running.stop()
        broker.stop()


async def test_too_large_payloads_are_counted_and_dropped(
    broker_url: str, publisher: Publisher, running: Running
) -> None:
    prefix, report, hub, inbox = topic_prefix(), RecordingReport(), MqttHub(), Inbox()
    hub.subscribe(f"{prefix}/#", inbox)
    client = running.start(make_client(settings_for(broker_url, max_payload=100), report, hub))
    await subscribed(client, f"{prefix}/#")
    publisher.publish(f"{prefix}/big", b"x" * 5000)
    publisher.publish(f"{prefix}/small", b"ok")
    assert await inbox.next() == (f"{prefix}/small", b"ok")  # in order: the big one was dropped
    assert client.health()["malformed"] == {"too_large": 1}


async def test_subscribing_and_unsubscribing_while_connected(
    broker_url: str, publisher: Publisher, running: Running
) -> None:
    prefix, hub = topic_prefix(), MqttHub()
    first, second = Inbox(), Inbox()
    client = running.start(make_client(settings_for(broker_url), RecordingReport(), hub))
    unsubscribe: Callable[[], None] = hub.subscribe(f"{prefix}/one", first)
    await subscribed(client, f"{prefix}/one")
    hub.subscribe(f"{prefix}/two", second)
    await subscribed(client, f"{prefix}/two")
    unsubscribe()
    assert f"{prefix}/one" not in client.subscribed
    publisher.publish(f"{prefix}/one", b"not routed")  # UNSUBSCRIBE was sent before this
    publisher.publish(f"{prefix}/two", b"routed")
    assert await second.next() == (f"{prefix}/two", b"routed")
    assert first.queue.empty()
    assert hub.filters == [f"{prefix}/two"]


@pytest.fixture
def certificates() -> Iterator[tuple[Path, Path, Path]]:
    # Not in tmp_path (0700): a mosquitto started as root reads them as user "mosquitto".
    certs = Path(tempfile.mkdtemp(prefix="mqtt-tls-"))
    certs.chmod(0o755)
    yield make_certificates(certs)
    shutil.rmtree(certs)


@pytest.mark.usefixtures("mosquitto_only")
async def test_tls_with_the_broker_certificate_checked(
    tmp_path: Path, running: Running, certificates: tuple[Path, Path, Path]
) -> None:
    ca, cert, key = certificates
    broker = PrivateBroker(tmp_path, "mosquitto", tls=(ca, cert, key))
    broker.start()
    try:
        prefix, report, hub, inbox = topic_prefix(), RecordingReport(), MqttHub(), Inbox()
        hub.subscribe(f"{prefix}/#", inbox)
        settings = settings_for(broker.url, tls_ca_file=str(ca))
        assert settings.tls
        client = running.start(make_client(settings, report, hub))
        await subscribed(client, f"{prefix}/#")
        # Many messages in one burst: TLS may hold several records in its buffer at once.
        publisher = TlsPublisher(broker.port, ca)
        try:
            await asyncio.to_thread(
                publisher.publish_many, [(f"{prefix}/{n}", b"%d" % n) for n in range(200)]
            )
        finally:
            publisher.close()
        got = [await inbox.next() for _ in range(200)]
        assert [payload for _, payload in got] == [b"%d" % n for n in range(200)]
        details = report.calls[1].details
        assert details is not None and details["tls"] is True
        # Without the CA the certificate does not verify: a clear error, then backoff.
        report2, clock, other = RecordingReport(), FakeClock(), Running()
        other.start(make_client(replace(settings, tls_ca_file=""), report2, MqttHub(), clock))
        try:
            await report2.wait_for_event("disconnected", integration="mqtt")
        finally:
            await other.stop()
        first_error = report2.errors("disconnected", integration="mqtt")[0]
        assert "CERTIFICATE_VERIFY_FAILED" in str(first_error)
    finally:
        await running.stop()
        broker.stop()


class TlsPublisher(Publisher):
    def __init__(self, port: int, ca: Path) -> None:
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        self.client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
        self.client.tls_set(ca_certs=str(ca))
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()


def test_a_bad_filter_is_refused() -> None:
    with pytest.raises(ValueError, match="# must be a whole level"):
        MqttHub().subscribe("a/#/b", lambda t, p: None)
