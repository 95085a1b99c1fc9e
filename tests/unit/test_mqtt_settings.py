"""The MQTT transport's pure parts: URLs, settings from a configuration, filters, matching."""

from __future__ import annotations

from typing import Any

import pytest

from services.integrations.config_spec import EMBEDDED_URL, EffectiveConfig, spec_for
from services.integrations.mqtt_settings import (
    SettingsError,
    client_id,
    disconnect_text,
    filter_problem,
    matches,
    parse_url,
    settings_from,
)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://broker", ("broker", 1883, False, "", "")),
        ("tcp://broker:1884", ("broker", 1884, False, "", "")),
        ("mqtts://broker", ("broker", 8883, True, "", "")),
        ("ssl://broker:8884", ("broker", 8884, True, "", "")),
        ("mqtt://user:p%40ss@10.0.0.2:1883", ("10.0.0.2", 1883, False, "user", "p@ss")),
        ("mqtt://[::1]:1883", ("::1", 1883, False, "", "")),
    ],
)
def test_parse_url(url: str, expected: tuple[Any, ...]) -> None:
    parts = parse_url(url)
    assert (parts["host"], parts["port"], parts["tls"], parts["username"], parts["password"]) == (
        expected
    )


@pytest.mark.parametrize("url", ["http://broker", "mqtt://", "mqtt://broker:70000", "broker"])
def test_parse_url_rejects(url: str) -> None:
    with pytest.raises(SettingsError):
        parse_url(url)


def config(**values: Any) -> EffectiveConfig:
    return EffectiveConfig("mqtt", True, True, {**spec_for("mqtt").defaults(), **values}, "row")


def test_settings_from_a_url_with_credentials_overridden_by_fields() -> None:
    settings = settings_from(config(url="mqtt://a:b@broker:1900", password="field-secret"))
    assert (settings.host, settings.port, settings.username) == ("broker", 1900, "a")
    assert settings.password == "field-secret"
    assert "field-secret" not in repr(settings)  # never in logs or health


def test_settings_from_the_embedded_broker_speak_3_1_1() -> None:
    settings = settings_from(config(url=EMBEDDED_URL))
    assert settings.embedded and settings.protocol == "3.1.1"
    assert settings.address == "embedded broker"


def test_settings_without_a_broker_are_refused() -> None:
    with pytest.raises(SettingsError, match="no broker"):
        settings_from(config(url=""))


def test_equal_configs_give_equal_settings() -> None:
    assert settings_from(config(url="mqtt://b")) == settings_from(config(url="mqtt://b"))
    assert settings_from(config(url="mqtt://b")) != settings_from(config(url="mqtt://c"))


def test_client_ids_are_short_and_unique_per_worker() -> None:
    ids = {client_id("alarm", f"host:{pid}:abc") for pid in range(1000)}
    assert len(ids) == 1000
    assert all(len(i) <= 23 for i in ids)
    assert client_id("a-very-long-prefix-indeed", "w").startswith("a-very-long-")


@pytest.mark.parametrize(
    ("topic_filter", "ok"),
    [("a/b", True), ("a/+/c", True), ("a/#", True), ("#", True), ("+", True), ("", False),
     ("a/#/c", False), ("a#", False), ("a/b+", False), ("a\x00", False)],
)  # fmt: skip
def test_filter_problem(topic_filter: str, ok: bool) -> None:
    assert (filter_problem(topic_filter) is None) is ok


@pytest.mark.parametrize(
    ("topic_filter", "topic", "expected"),
    [
        ("a/b", "a/b", True),
        ("a/b", "a/b/c", False),
        ("a/+", "a/b", True),
        ("a/+", "a/b/c", False),
        ("a/+/c", "a/x/c", True),
        ("a/#", "a", True),  # the parent level matches too
        ("a/#", "a/b/c", True),
        ("#", "anything/at/all", True),
        ("#", "$SYS/broker", False),  # $ topics only by explicit filters
        ("+/x", "$SYS/x", False),
        ("$SYS/#", "$SYS/broker", True),
        ("+/+", "/finance", True),
        ("a/b", "a/c", False),
    ],
)
def test_matches(topic_filter: str, topic: str, expected: bool) -> None:
    assert matches(topic_filter, topic) is expected


@pytest.mark.parametrize(
    ("from_broker", "reason", "text"),
    [
        (False, "Unspecified error", "connection lost"),
        (False, "Keep alive timeout", "keepalive timeout: no answer from the broker"),
        (True, "Session taken over", "the broker disconnected us: Session taken over"),
        (False, "Protocol error", "Protocol error"),
    ],
)
def test_disconnect_text(from_broker: bool, reason: str, text: str) -> None:
    assert disconnect_text(from_broker, reason) == text
