from __future__ import annotations

import logging

import pytest

from services.integrations.home_assistant import HomeAssistantSettings
from services.integrations.ws_support import (
    DeliveredStates,
    EntityState,
    StatusReporter,
    reconnect_delay,
)
from services.integrations.zwavejs import ZwaveJsSettings
from tests.fakes.recorders import RecordingReport

TOKEN = "llat-abcdef-very-secret"


@pytest.mark.parametrize(
    ("attempt", "fraction", "delay"),
    [
        (1, 0.0, 0.5),
        (1, 0.999, 0.9995),
        (2, 0.0, 1.0),
        (3, 0.5, 3.0),
        (7, 0.0, 30.0),  # 64 capped at 60, half fixed
        (7, 0.999, 59.97),
        (10_000, 0.0, 30.0),  # no overflow
    ],
)
def test_reconnect_delay_is_half_fixed_half_jitter(attempt, fraction, delay):
    assert reconnect_delay(attempt, base=1.0, cap=60.0, fraction=fraction) == pytest.approx(delay)


def test_status_reporter_reports_transitions_only():
    report = RecordingReport()
    status = StatusReporter("home_assistant", report)
    status("connecting")
    status("disconnected", error="refused")
    status("disconnected", error="refused")
    status("disconnected", error="timeout")
    status("connected", details={"version": "1"})
    status("connected", details={"version": "1"})
    status("connected", details={"version": "2"})
    assert [(c.event, c.error) for c in report.calls] == [
        ("connecting", None),
        ("disconnected", "refused"),
        ("disconnected", "timeout"),
        ("connected", None),
        ("connected", None),
    ]
    assert {c.integration for c in report.calls} == {"home_assistant"}
    assert status.event == "connected"


def test_a_failing_report_never_reaches_the_client(caplog):
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("hub is down")

    status = StatusReporter("zwavejs", broken)
    with caplog.at_level(logging.ERROR):
        status("connected")
    assert [r.event for r in caplog.records] == ["zwavejs.report_failed"]


def test_delivered_states_remember_and_forget():
    delivered = DeliveredStates()
    door = EntityState("binary_sensor.door", "on", {"friendly_name": "Door"})
    assert delivered.is_new(door)
    delivered.remember(door)
    assert not delivered.is_new(EntityState("binary_sensor.door", "on", {"friendly_name": "Door"}))
    assert delivered.is_new(EntityState("binary_sensor.door", "on", {"friendly_name": "D2"}))
    assert delivered.is_new(EntityState("binary_sensor.door", "off", {"friendly_name": "Door"}))
    delivered.forget("binary_sensor.door")
    assert delivered.is_new(door) and len(delivered) == 0


# --- settings ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base_url", "http", "ws", "display"),
    [
        (
            "http://ha.local:8123",
            "http://ha.local:8123",
            "ws://ha.local:8123/api/websocket",
            "http://ha.local:8123",
        ),
        (
            "https://ha.example.org/",
            "https://ha.example.org",
            "wss://ha.example.org/api/websocket",
            "https://ha.example.org",
        ),
        (
            "ws://10.0.0.2:8123/api/websocket",
            "http://10.0.0.2:8123",
            "ws://10.0.0.2:8123/api/websocket",
            "http://10.0.0.2:8123",
        ),
        (
            "wss://ha.example.org/prefix/api/websocket",
            "https://ha.example.org/prefix",
            "wss://ha.example.org/prefix/api/websocket",
            "https://ha.example.org/prefix",
        ),
        (
            "http://user:pw@[::1]:8123",
            "http://user:pw@[::1]:8123",
            "ws://user:pw@[::1]:8123/api/websocket",
            "http://[::1]:8123",
        ),
    ],
)
def test_home_assistant_urls(base_url, http, ws, display):
    settings = HomeAssistantSettings(base_url, TOKEN)
    assert (settings.http_url, settings.websocket_url, settings.display_url) == (http, ws, display)
    assert settings.rest_url("/api/states") == f"{http}/api/states"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"base_url": "ftp://ha"}, "base_url"),
        ({"base_url": "ha.local:8123"}, "base_url"),
        ({"base_url": "http://"}, "base_url"),
        ({"token": ""}, "token"),
        ({"heartbeat_interval": 0}, "heartbeat_interval"),
        ({"pong_timeout": -1}, "pong_timeout"),
        ({"backoff_cap": 0}, "backoff_cap"),
        ({"auth_retry_interval": 0}, "auth_retry_interval"),
        ({"max_frame_bytes": 10}, "max_frame_bytes"),
    ],
)
def test_home_assistant_settings_name_the_bad_field(kwargs, field):
    arguments = {"base_url": "http://ha.local:8123", "token": TOKEN, **kwargs}
    with pytest.raises(ValueError, match=field):
        HomeAssistantSettings(**arguments)


def test_the_token_is_not_in_the_settings_repr():
    assert TOKEN not in repr(HomeAssistantSettings("http://ha.local:8123", TOKEN))


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"url": "http://zwave:3000"}, "url"),
        ({"url": "ws://"}, "url"),
        ({"heartbeat_interval": 0}, "heartbeat_interval"),
        ({"schema_version": -1}, "schema_version"),
        ({"max_frame_bytes": 1}, "max_frame_bytes"),
    ],
)
def test_zwavejs_settings_name_the_bad_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        ZwaveJsSettings(**{"url": "ws://zwave:3000", **kwargs})


def test_zwavejs_display_url_has_no_user_info():
    assert ZwaveJsSettings("ws://u:p@zwave:3000/").display_url == "ws://zwave:3000/"
