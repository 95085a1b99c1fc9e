"""Pure parts of the MQTT transport: its settings, URL parsing, topic filters, reason texts.

No I/O: ``mqtt.py`` holds the connection. ``settings_from(config)`` turns an effective
configuration (``config.load``) into the frozen ``MqttSettings`` the client runs with; two equal
settings mean "nothing to restart".
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from services.integrations.config_spec import EMBEDDED_URL, EffectiveConfig

DEFAULT_PORTS = {"mqtt": 1883, "tcp": 1883, "mqtts": 8883, "ssl": 8883}
TLS_SCHEMES = {"mqtts", "ssl"}


class SettingsError(ValueError):
    """A configuration the client cannot run with (the message says why)."""


@dataclass(frozen=True)
class MqttSettings:
    host: str = ""
    port: int = 1883
    tls: bool = False
    username: str = ""
    password: str = field(default="", repr=False)
    client_id_prefix: str = "alarm"
    keepalive: int = 60
    protocol: str = "auto"  # "auto" (5, falling back to 3.1.1), "5" or "3.1.1"
    tls_ca_file: str = ""
    tls_insecure: bool = False
    reconnect_min: float = 1.0
    reconnect_max: float = 120.0
    max_payload: int = 1_048_576
    connect_timeout: float = 5.0
    embedded: bool = False  # host/port come from the embedded broker, started on connect

    @property
    def address(self) -> str:
        return "embedded broker" if self.embedded and not self.host else f"{self.host}:{self.port}"


def parse_url(url: str) -> dict[str, Any]:
    """``mqtt[s]://user:pass@host:port`` -> host, port, tls, username, password."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        raise SettingsError(f"MQTT URL must look like mqtt://host:1883, got scheme {scheme!r}")
    try:
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError as exc:
        raise SettingsError(f"MQTT URL has a bad port: {exc}") from None
    return {
        "host": parts.hostname,
        "port": port,
        "tls": scheme in TLS_SCHEMES,
        "username": unquote(parts.username or ""),
        "password": unquote(parts.password or ""),
    }


def settings_from(config: EffectiveConfig) -> MqttSettings:
    """The settings of an active MQTT configuration. SettingsError when unusable."""
    values = config.values
    url = str(values.get("url") or "")
    if not url:
        raise SettingsError("no broker: set url, or the MQTT_URL environment variable")
    protocol = str(values.get("protocol", "auto"))
    if url == EMBEDDED_URL:
        target: dict[str, Any] = {"embedded": True, "host": "", "port": 0, "tls": False}
        target.update(username="", password="")
        protocol = "3.1.1"  # amqtt speaks nothing else; no need to ask it for 5 first
    else:
        target = parse_url(url)
    # Credentials of the configuration win over those in the URL.
    for name in ("username", "password"):
        if values.get(name):
            target[name] = str(values[name])
    return MqttSettings(
        **target,
        client_id_prefix=str(values.get("client_id_prefix") or "alarm"),
        keepalive=int(values.get("keepalive", 60)),
        protocol=protocol,
        tls_ca_file=str(values.get("tls_ca_file") or ""),
        tls_insecure=bool(values.get("tls_insecure", False)),
        reconnect_min=float(values.get("reconnect_min", 1.0)),
        reconnect_max=float(values.get("reconnect_max", 120.0)),
        max_payload=int(values.get("max_payload", 1_048_576)),
    )


def client_id(prefix: str, worker_id: str) -> str:
    """Unique per worker (two clients with one id would take each other's session over) and
    at most 23 characters, the length every MQTT 3.1.1 broker must accept."""
    digest = hashlib.sha256(worker_id.encode()).hexdigest()[:10]
    return f"{prefix[:12]}-{digest}"


def filter_problem(topic_filter: str) -> str | None:
    """Why ``topic_filter`` is not a valid MQTT subscription filter, or None."""
    if not topic_filter:
        return "a topic filter must not be empty"
    if len(topic_filter.encode()) > 65535 or "\x00" in topic_filter:
        return "a topic filter must be at most 65535 bytes, without NUL"
    levels = topic_filter.split("/")
    for n, level in enumerate(levels):
        if "#" in level and (level != "#" or n != len(levels) - 1):
            return "# must be a whole level, and the last"
        if "+" in level and level != "+":
            return "+ must be a whole level"
    return None


def matches(topic_filter: str, topic: str) -> bool:
    """MQTT matching: ``+`` one level, ``#`` the rest; ``$`` topics only by explicit filters."""
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    filter_levels, topic_levels = topic_filter.split("/"), topic.split("/")
    for n, level in enumerate(filter_levels):
        if level == "#":
            return True
        if n >= len(topic_levels) or (level != "+" and level != topic_levels[n]):
            return False
    return len(filter_levels) == len(topic_levels)


def disconnect_text(from_broker: bool, reason: str) -> str:
    """The reason shown for a lost connection (paho's reason codes are terse)."""
    if from_broker:
        return f"the broker disconnected us: {reason}"
    if reason == "Keep alive timeout":
        return "keepalive timeout: no answer from the broker"
    if reason in ("Unspecified error", "Success"):
        return "connection lost"
    return reason


# CONNACK reason codes (MQTT 5 names; paho maps 3.1.1's return codes onto them).
UNSUPPORTED_PROTOCOL = "Unsupported protocol version"
AUTH_FAILURES = frozenset({"Bad user name or password", "Not authorized"})
