"""Per-kind configuration fields: defaults, types, checks, required fields, unknown fields."""

from __future__ import annotations

from typing import Any

import pytest

from services.integrations.config_spec import KINDS, spec_for, topic_prefix_problem


@pytest.mark.parametrize(
    ("kind", "values", "errors"),
    [
        ("mqtt", {}, {}),
        ("mqtt", {"url": "mqtt://broker:1883", "username": "u", "password": "p"}, {}),
        ("mqtt", {"url": "mqtts://broker"}, {}),
        ("mqtt", {"url": ""}, {}),  # empty: the environment default
        ("mqtt", {"url": "http://broker"}, {"url": "must look like mqtt://host:port"}),
        ("mqtt", {"url": "mqtt://u:secret@broker"}, {"url": "must not contain a password"}),
        ("mqtt", {"url": "mqtt://broker:99999"}, {"url": "is not a valid URL"}),
        ("mqtt", {"keepalive": 1}, {"keepalive": "must be between 5 and 3600"}),
        ("mqtt", {"keepalive": "60"}, {"keepalive": "must be a whole number"}),
        ("mqtt", {"keepalive": True}, {"keepalive": "must be a number"}),
        ("mqtt", {"reconnect_min": 2}, {}),  # an int is a fine float
        ("mqtt", {"protocol": "4"}, {"protocol": "must be one of auto, 5, 3.1.1"}),
        ("mqtt", {"tls_insecure": "yes"}, {"tls_insecure": "must be true or false"}),
        ("mqtt", {"reconnect_min": 10, "reconnect_max": 5}, {"reconnect_max": "at least"}),
        ("mqtt", {"hostname": "x"}, {"hostname": "unknown field; known fields:"}),
        ("zigbee2mqtt", {"base_topic": "home/zigbee"}, {}),
        ("zigbee2mqtt", {"base_topic": "zigbee/#"}, {"base_topic": "wildcards"}),
        ("zigbee2mqtt", {"base_topic": "zigbee/"}, {"base_topic": "nor end with /"}),
        ("zigbee2mqtt", {"stale_after": 0}, {"stale_after": "must be between 1 and 86400"}),
        ("zigbee2mqtt", {"ignored_attributes": ["a", 1]}, {"ignored_attributes": "list of text"}),
        ("frigate", {"topic_prefix": "frigate"}, {}),
        ("frigate", {"topic_prefix": "a//b"}, {"topic_prefix": "empty levels"}),
        ("home_assistant", {"url": "http://ha:8123", "token": "t"}, {}),
        ("home_assistant", {"url": "http://ha:8123"}, {"token": "is required"}),
        ("home_assistant", {"token": "t"}, {"url": "is required"}),
        ("zwavejs", {"url": "ws://zwave:3000"}, {}),
        ("zwavejs", {"url": "http://zwave:3000"}, {"url": "must look like ws://"}),
    ],
)
def test_validate(kind: str, values: dict[str, Any], errors: dict[str, str]) -> None:
    found = spec_for(kind).validate(values)
    assert set(found) == set(errors), found
    for name, fragment in errors.items():
        assert fragment in found[name]


def test_a_config_that_is_no_object_is_one_error() -> None:
    assert spec_for("mqtt").validate(["url"]) == {"__all__": "must be a JSON object, got list"}


def test_defaults_and_with_defaults() -> None:
    spec = spec_for("zigbee2mqtt")
    assert spec.defaults()["stale_after"] == 75.0
    merged = spec.with_defaults({"base_topic": "z", "stale_after": None})
    assert merged["base_topic"] == "z" and merged["stale_after"] == 75.0


def test_secret_fields() -> None:
    assert spec_for("mqtt").secret_fields == ("password",)
    assert spec_for("home_assistant").secret_fields == ("token",)
    assert spec_for("frigate").secret_fields == ()


def test_every_kind_is_declared_and_unknown_ones_are_refused() -> None:
    assert KINDS == ("mqtt", "zigbee2mqtt", "frigate", "home_assistant", "zwavejs")
    with pytest.raises(ValueError, match="unknown integration 'nope'; known: mqtt"):
        spec_for("nope")


@pytest.mark.parametrize(
    ("prefix", "ok"),
    [("frigate", True), ("a/b/c", True), ("", False), ("$SYS", False), ("/a", False),
     ("a+", False), ("a/#", False), ("a\x00b", False), ("x" * 1025, False)],
)  # fmt: skip
def test_topic_prefix_problem(prefix: str, ok: bool) -> None:
    assert (topic_prefix_problem(prefix) is None) is ok
