from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from realtime.sequence import HybridClock
from realtime.status import (
    INTEGRATIONS,
    IntegrationStatus,
    ReportError,
    apply,
    check_report,
    integration_payload,
    system_status_payload,
)

T0 = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)
T1 = T0 + timedelta(seconds=5)


def mqtt(**fields: object) -> IntegrationStatus:
    return replace(IntegrationStatus("mqtt"), **fields)  # type: ignore[arg-type]


ON = {"configured": True, "enabled": True}


@pytest.mark.parametrize(
    ("before", "event", "kwargs", "changed", "after"),
    [
        # first contact: a connection report implies configured and enabled
        (mqtt(), "connecting", {}, True, {"link": "connecting", **ON, "since": T1}),
        (
            mqtt(**ON, link="connecting"),
            "connected",
            {},
            True,
            {"link": "connected", "last_connect_at": T1, "since": T1},
        ),
        # a repeated event changes nothing, not even a timestamp
        (mqtt(**ON, link="connected", last_connect_at=T0), "connected", {}, False, {}),
        (mqtt(**ON, link="connecting"), "connecting", {}, False, {}),
        # disconnect: timestamps and the reason
        (
            mqtt(**ON, link="connected"),
            "disconnected",
            {"error": "broker gone"},
            True,
            {"link": "disconnected", "last_disconnect_at": T1, "last_error": "broker gone"},
        ),
        # a new reason while disconnected is a change; the same one is not
        (
            mqtt(**ON, link="disconnected", last_error="a"),
            "disconnected",
            {"error": "b"},
            True,
            {"last_error": "b"},
        ),
        (
            mqtt(**ON, link="disconnected", last_error="a"),
            "disconnected",
            {"error": "a"},
            False,
            {},
        ),
        # never connected: no last_disconnect_at
        (
            mqtt(**ON, link="connecting"),
            "disconnected",
            {},
            True,
            {"link": "disconnected", "last_disconnect_at": None},
        ),
        (
            mqtt(**ON, link="connecting"),
            "auth_failed",
            {"error": "bad password"},
            True,
            {"link": "auth_failed", "last_error": "bad password"},
        ),
        # configuration
        (mqtt(), "configured", {"details": {"enabled": False}}, True, {"configured": True}),
        (mqtt(), "configured", {}, True, {"configured": True, "enabled": True}),
        (mqtt(**ON), "configured", {}, False, {}),
        (
            mqtt(**ON, link="connected", details={"broker": "x"}),
            "unconfigured",
            {},
            True,
            {"configured": False, "enabled": False, "link": "idle", "details": {}},
        ),
        # details merge; unchanged details are no change
        (
            mqtt(**ON, link="connected", details={"a": 1}),
            "connected",
            {"details": {"b": 2}},
            True,
            {"details": {"a": 1, "b": 2}},
        ),
        (
            mqtt(**ON, link="connected", details={"a": 1}),
            "connected",
            {"details": {"a": 1}},
            False,
            {},
        ),
    ],
)
def test_transitions(
    before: IntegrationStatus,
    event: str,
    kwargs: dict[str, object],
    changed: bool,
    after: dict[str, object],
) -> None:
    moved = apply(before, event, at=T1, **kwargs)  # type: ignore[arg-type]
    assert moved.changed is changed
    if not changed:
        assert moved.status == before
    for name, value in after.items():
        assert getattr(moved.status, name) == value, name


@pytest.mark.parametrize(
    ("integration", "fields", "online", "state"),
    [
        ("mqtt", {}, False, "unconfigured"),
        ("mqtt", {"configured": True}, False, "disabled"),
        ("mqtt", {**ON, "link": "connected"}, True, "online"),
        ("mqtt", {**ON, "link": "connecting"}, False, "connecting"),
        ("mqtt", {**ON, "link": "auth_failed"}, False, "auth_failed"),
        ("mqtt", {**ON, "link": "disconnected"}, False, "offline"),
        ("mqtt", {**ON, "link": "idle"}, False, "offline"),
        # availability integrations: their bridge decides once it has spoken
        ("zigbee2mqtt", {**ON, "link": "connected"}, True, "online"),
        ("zigbee2mqtt", {**ON, "link": "connected", "available": False}, False, "offline"),
        ("zigbee2mqtt", {**ON, "link": "idle", "available": True}, True, "online"),
        ("frigate", {**ON, "link": "disconnected", "available": True}, False, "offline"),
        ("frigate", {**ON, "available": True}, True, "online"),
        # availability means nothing for a link integration
        ("mqtt", {**ON, "link": "disconnected", "available": True}, False, "offline"),
    ],
)
def test_online_and_state(
    integration: str, fields: dict[str, object], online: bool, state: str
) -> None:
    status = replace(IntegrationStatus(integration), **fields)  # type: ignore[arg-type]
    assert status.online is online
    assert status.state == state


def test_availability_events_and_dead_link() -> None:
    z2m = IntegrationStatus("zigbee2mqtt", **ON, link="connected")  # type: ignore[arg-type]
    up = apply(z2m, "available", at=T0)
    assert up.changed and up.status.online and up.status.available is True
    down = apply(up.status, "unavailable", at=T1, error="bridge offline")
    assert down.status.state == "offline" and down.status.last_error == "bridge offline"
    assert down.status.since == T1
    # the MQTT link dropping takes availability with it; reconnecting does not bring it back
    back = apply(up.status, "disconnected", at=T1)
    assert back.status.available is False
    relinked = apply(back.status, "connected", at=T1)
    assert not relinked.status.online
    assert apply(relinked.status, "available", at=T1).status.online


def test_since_moves_only_with_the_state() -> None:
    status = apply(mqtt(**ON), "connected", at=T0).status
    assert status.since == T0
    status = apply(status, "connected", at=T1, details={"v": 5}).status
    assert status.since == T0  # details changed, the state did not


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (("nope", "connected", None, None), "unknown integration"),
        ((None, "connected", None, None), "unknown integration"),
        (("mqtt", "exploded", None, None), "unknown event"),
        (("mqtt", "disconnected", 42, None), "error must be a string"),
        (("mqtt", "connected", None, ["x"]), "details must be a dict"),
    ],
)
def test_bad_reports(args: tuple[object, ...], problem: str) -> None:
    with pytest.raises(ReportError, match=problem):
        check_report(*args)


def test_long_errors_are_cut() -> None:
    _, _, error, _ = check_report("mqtt", "disconnected", "x" * 10_000, None)
    assert error is not None and len(error) == 500


def test_payload_has_the_old_panels_shape() -> None:
    status = apply(mqtt(**ON), "connected", at=T0, details={"broker": "127.0.0.1:1883"}).status
    payload = system_status_payload({"mqtt": status})
    assert list(payload) == list(INTEGRATIONS)
    assert payload["mqtt"] == {
        "configured": True,
        "enabled": True,
        "connected": True,
        "state": "online",
        "since": T0.isoformat(),
        "last_connect_at": T0.isoformat(),
        "last_disconnect_at": None,
        "last_error": None,
        "details": {"broker": "127.0.0.1:1883"},
    }
    assert payload["home_assistant"]["reachable"] is False
    assert payload["home_assistant"]["configured"] is False
    assert payload["zwavejs"]["connected"] is False
    assert payload["zigbee2mqtt"]["connected"] is False
    assert payload["frigate"]["available"] is False
    for name in ("home_assistant", "zwavejs", "zigbee2mqtt", "frigate"):
        assert payload[name]["state"] == "unconfigured"
    assert integration_payload(IntegrationStatus("frigate"))["available"] is False


def test_sequence_grows_past_floor_and_the_clock() -> None:
    wall = iter([100, 100, 50, 500]).__next__
    clock = HybridClock(wall)
    assert clock.next() == 100
    assert clock.next() == 101  # same microsecond: bumped
    assert clock.next() == 102  # the wall clock stepped back: still grows
    clock.observe(1000)
    assert clock.next() == 1001  # never at or below a number seen in the table
    assert HybridClock(lambda: 5).next(floor=41) == 42
