"""MQTT brokers for tests: the shared one (the machine's, or the embedded amqtt broker), and
private ones a test may stop and start (mosquitto when installed, else amqtt)."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

MOSQUITTO = shutil.which("mosquitto") or (
    "/usr/sbin/mosquitto" if os.access("/usr/sbin/mosquitto", os.X_OK) else None
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def topic_prefix() -> str:
    """A prefix of this test alone: other helpers' tests share the machine's broker."""
    return f"test-{secrets.token_hex(6)}"


class PrivateBroker:
    """A broker process of one test on a fixed port, restartable. ``kind``: mosquitto or amqtt."""

    def __init__(self, directory: Path, kind: str | None = None, *, anonymous: bool = True) -> None:
        self.kind = kind or ("mosquitto" if MOSQUITTO else "amqtt")
        if self.kind == "mosquitto" and MOSQUITTO is None:
            raise RuntimeError("mosquitto is not installed")
        self.directory = directory
        self.port = free_port()
        self.anonymous = anonymous
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        assert self.process is None, "already running"
        config = self.directory / f"{self.kind}.conf"
        if self.kind == "mosquitto":
            config.write_text(
                f"listener {self.port} 127.0.0.1\n"
                f"allow_anonymous {'true' if self.anonymous else 'false'}\n"
                "persistence false\n"
            )
            args = [str(MOSQUITTO), "-c", str(config)]
        else:
            config.write_text(
                "listeners:\n  default:\n    type: tcp\n"
                f"    bind: 127.0.0.1:{self.port}\n"
                "plugins:\n  amqtt.plugins.authentication.AnonymousAuthPlugin:\n"
                f"    allow_anonymous: {'true' if self.anonymous else 'false'}\n"
            )
            args = [sys.executable, "-m", "amqtt.scripts.broker_script", "-c", str(config)]
        log = open(self.directory / f"{self.kind}-{self.starts}.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.starts += 1
        deadline = time.monotonic() + 20
        while not listening(self.port):  # a fresh server's start-up only
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the {self.kind} broker did not start on {self.port}")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None


class Publisher:
    """A plain paho client of the test (its own network thread) that publishes and waits."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("mqtt://").rsplit(":", 1)
        self.client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
        self.client.connect(host, int(port))
        self.client.loop_start()

    def publish(
        self, topic: str, payload: bytes | str, *, qos: int = 1, retain: bool = False
    ) -> None:
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(timeout=10)
        if not info.is_published():
            raise TimeoutError(f"could not publish to {topic}")

    def publish_many(self, messages: list[tuple[str, bytes]], *, qos: int = 1) -> None:
        infos = [self.client.publish(t, p, qos=qos) for t, p in messages]
        for info in infos:
            info.wait_for_publish(timeout=30)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
