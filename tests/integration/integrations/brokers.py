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
from typing import Any

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

    def __init__(
        self,
        directory: Path,
        kind: str | None = None,
        *,
        anonymous: bool = True,
        tls: tuple[Path, Path, Path] | None = None,  # CA, certificate, key (mosquitto only)
    ) -> None:
        self.kind = kind or ("mosquitto" if MOSQUITTO else "amqtt")
        if self.kind == "mosquitto" and MOSQUITTO is None:
            raise RuntimeError("mosquitto is not installed")
        self.directory = directory
        self.port = free_port()
        self.anonymous = anonymous
        self.tls = tls
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://127.0.0.1:{self.port}"

    def start(self) -> None:
        assert self.process is None, "already running"
        config = self.directory / f"{self.kind}.conf"
        if self.kind == "mosquitto":
            tls = ""
            if self.tls:
                ca, cert, key = self.tls
                tls = f"cafile {ca}\ncertfile {cert}\nkeyfile {key}\n"
            config.write_text(
                f"listener {self.port} 127.0.0.1\n{tls}"
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

    def stop(self, signum: signal.Signals = signal.SIGTERM) -> None:
        """Stop the broker: SIGTERM (a clean shutdown) or SIGKILL (it dies on the spot)."""
        if self.process is None:
            return
        self.process.send_signal(signum)
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


def make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it: (ca.pem, server.pem, key)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def build(subject: str, issuer: x509.Name | None, key: Any, sign_key: Any, ca: bool) -> Any:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
        builder = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(issuer or name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(sign_key.public_key()), False
            )
        )
        if ca:
            usage = x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False,
            )  # fmt: skip
            builder = builder.add_extension(usage, critical=True)
        else:
            san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
            builder = builder.add_extension(san, critical=False)
        return builder.sign(sign_key, hashes.SHA256())

    ca_key, server_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    ca_cert = build("test CA", None, ca_key, ca_key, True)
    server_cert = build("127.0.0.1", ca_cert.subject, server_key, ca_key, False)
    paths = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    paths[0].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    for path in paths:  # mosquitto started as root reads them as its own unprivileged user
        path.chmod(0o644)
    return paths
