"""Zigbee2MQTT's pure parts: topic routing, payloads, entity mapping, liveness."""

from __future__ import annotations

import json
from typing import Any

import pytest

from services.integrations import z2m_parse as z2m
from services.integrations.payloads import Malformed

BASE = "zigbee2mqtt"


@pytest.mark.parametrize(
    ("topic", "known", "kind", "device"),
    [
        ("zigbee2mqtt/bridge/state", (), "bridge_state", ""),
        ("zigbee2mqtt/bridge/devices", (), "bridge_devices", ""),
        ("zigbee2mqtt/bridge/info", (), "ignored", ""),
        ("zigbee2mqtt/bridge/response/device/rename", (), "ignored", ""),
        ("zigbee2mqtt/bridge/bogus", (), "unknown", ""),
        ("zigbee2mqtt/Front Door", (), "device", "Front Door"),
        ("zigbee2mqtt/hall/lamp", (), "device", "hall/lamp"),
        ("zigbee2mqtt/hall/lamp", ("hall/lamp",), "device", "hall/lamp"),
        ("zigbee2mqtt/lamp/set", (), "ignored", ""),
        ("zigbee2mqtt/lamp/get", (), "ignored", ""),
        ("zigbee2mqtt/lamp/set/brightness", (), "ignored", ""),
        ("zigbee2mqtt/lamp/availability", (), "availability", "lamp"),
        ("zigbee2mqtt/lamp/brightness", ("lamp",), "ignored", ""),  # attribute output
        ("zigbee2mqtt", (), "unknown", ""),
        ("zigbee2mqtt/", (), "unknown", ""),
        ("zigbee2mqtt//x", (), "unknown", ""),
        ("zigbee2mqtt/x/", (), "unknown", ""),
        ("other/x", (), "unknown", ""),
    ],
)
def test_route(topic: str, known: tuple[str, ...], kind: str, device: str) -> None:
    assert z2m.route(BASE, topic, set(known)) == z2m.Route(kind, device)


@pytest.mark.parametrize(
    ("payload", "online"),
    [(b"online", True), (b"offline", False), (b" online\n", True),
     (b'{"state": "online"}', True), (b'{"state":"offline"}', False), (b'"online"', True)],
)  # fmt: skip
def test_online_state(payload: bytes, online: bool) -> None:
    assert z2m.online_state(payload) is online


@pytest.mark.parametrize(
    ("payload", "kind"),
    [(b"maybe", "bad_json"), (b'{"state": "up"}', "wrong_type"), (b"\xff\xfe", "bad_encoding"),
     (b"[1]", "wrong_type"), (b"{}", "wrong_type")],
)  # fmt: skip
def test_online_state_rejects(payload: bytes, kind: str) -> None:
    with pytest.raises(Malformed) as error:
        z2m.online_state(payload)
    assert error.value.kind == kind


def test_devices_lists_every_device_but_the_coordinator() -> None:
    payload = json.dumps(
        [
            {"friendly_name": "Coordinator", "type": "Coordinator", "ieee_address": "0x00"},
            {
                "friendly_name": "Front Door",
                "type": "EndDevice",
                "ieee_address": "0x01",
                "definition": {"model": "MCCGQ11LM", "vendor": "Aqara", "description": "Door"},
            },
            {"friendly_name": "plug", "type": "Router", "definition": None},
        ]
    ).encode()
    found = z2m.devices(payload)
    assert sorted(found) == ["Front Door", "plug"]
    assert found["Front Door"] == z2m.DeviceInfo(
        "Front Door", "0x01", "EndDevice", "MCCGQ11LM", "Aqara", "Door"
    )


@pytest.mark.parametrize(
    ("payload", "kind"),
    [(b'{"a": 1}', "wrong_type"), (b"[1]", "wrong_type"), (b'[{"type": "Router"}]', "wrong_type")],
)
def test_devices_rejects(payload: bytes, kind: str) -> None:
    with pytest.raises(Malformed) as error:
        z2m.devices(payload)
    assert error.value.kind == kind


@pytest.mark.parametrize(
    ("payload", "kind"),
    [
        (b"not json", "bad_json"),
        (b"[" * 100_000, "bad_json"),  # nesting past the recursion limit
        (b"\xc3\x28", "bad_encoding"),
        (b'{"a": "\\u0000"}', "bad_encoding"),  # PostgreSQL stores no NUL
        (b'{"a": "\\ud800"}', "bad_encoding"),  # a lone surrogate has no UTF-8
        (b"[1, 2]", "not_object"),
        (b'"text"', "not_object"),
        (b"null", "not_object"),
        (b'{"contact": "yes"}', "wrong_type"),
        (b'{"occupancy": 1}', "wrong_type"),
        (b'{"state": 1}', "wrong_type"),
        (json.dumps({f"k{i}": i for i in range(201)}).encode(), "too_many_fields"),
    ],
)
def test_device_state_rejects(payload: bytes, kind: str) -> None:
    with pytest.raises(Malformed) as error:
        z2m.device_state(payload)
    assert error.value.kind == kind


def test_device_state_accepts_surrogate_pairs() -> None:
    assert z2m.device_state(b'{"name": "\\ud83d\\ude00"}') == {"name": "\U0001f600"}


def test_device_state_accepts_nulls_and_extra_fields() -> None:
    assert z2m.device_state(b'{"contact": null, "color": {"x": 0.1}}') == {
        "contact": None,
        "color": {"x": 0.1},
    }


@pytest.mark.parametrize(
    ("name", "slug"),
    [("Front Door", "front_door"), ("hall/lamp 2", "hall_lamp_2"), ("Küche Sensor", "kuche_sensor"),
     ("__x__", "x"), ("0x00158d0001", "0x00158d0001"), ("UPPER-case.name", "upper_case_name")],
)  # fmt: skip
def test_slug(name: str, slug: str) -> None:
    assert z2m.slug(name) == slug
    assert z2m.entity_id(name) == f"zigbee2mqtt.{slug}"


def test_a_name_without_ascii_still_gets_a_stable_id() -> None:
    assert z2m.slug("дверь") == z2m.slug("дверь")
    assert z2m.slug("дверь").startswith("device_") and z2m.slug("дверь") != z2m.slug("окно")


@pytest.mark.parametrize(
    ("attributes", "state"),
    [
        ({"contact": False, "battery": 90}, "on"),  # open
        ({"contact": True}, "off"),
        ({"occupancy": True}, "on"),
        ({"water_leak": False}, "off"),
        ({"tamper": True, "state": "OFF"}, "on"),  # binary properties first
        ({"state": "ON", "brightness": 10}, "on"),
        ({"lock_state": "locked"}, "locked"),
        ({"action": "single"}, "single"),
        ({"action": ""}, "unknown"),
        ({"temperature": 21.5}, "unknown"),
        ({"contact": None, "state": "OFF"}, "off"),
    ],
)
def test_primary_state(attributes: dict[str, Any], state: str) -> None:
    assert z2m.primary_state(attributes) == state


def test_devices_merge_partial_updates_and_drop_ignored_attributes() -> None:
    devices = z2m.Devices(ignored=frozenset({"linkquality"}))
    first = devices.on_state("Door", {"contact": True, "battery": 90, "linkquality": 40})
    attributes = {"contact": True, "battery": 90}
    assert first == z2m.EntityUpdate("zigbee2mqtt.door", "off", attributes, "Door")
    second = devices.on_state("Door", {"contact": False})
    assert second.state == "on" and second.attributes == {"contact": False, "battery": 90}


def test_availability_makes_a_device_unavailable_and_back() -> None:
    devices = z2m.Devices()
    devices.on_state("Door", {"contact": True})
    assert devices.on_availability("Door", True) is None  # already available
    gone = devices.on_availability("Door", False)
    assert gone is not None and gone.state == "unavailable"
    assert devices.on_availability("Door", False) is None
    back = devices.on_availability("Door", True)
    assert back is not None and back.state == "off"


# Liveness: (input, at, bridge_online) -> the availability reported (None: no change).
@pytest.mark.parametrize(
    ("steps", "reports"),
    [
        ([("msg", 0, None)], [True]),
        ([("msg", 0, None), ("timer", 74.9, None)], [True, None]),
        ([("msg", 0, None), ("timer", 75, None)], [True, False]),
        ([("msg", 0, None), ("msg", 60, None), ("timer", 75, None), ("timer", 135, None)],
         [True, None, None, False]),
        ([("msg", 0, True), ("msg", 1, False)], [True, False]),  # bridge went offline
        ([("msg", 0, False), ("msg", 1, None)], [None, None]),  # offline until it says online
        ([("msg", 0, False), ("msg", 5, True)], [None, True]),
        ([("timer", 10, None)], [None]),
        ([("msg", 0, None), ("timer", 80, None), ("msg", 81, None)], [True, False, True]),
    ],
)  # fmt: skip
def test_liveness(steps: list[tuple[str, float, bool | None]], reports: list[bool | None]) -> None:
    liveness = z2m.Liveness(stale_after=75)
    got = [
        liveness.on_message(at, online) if step == "msg" else liveness.on_timer(at)
        for step, at, online in steps
    ]
    assert got == reports


def test_liveness_expiry_follows_the_last_message() -> None:
    liveness = z2m.Liveness(stale_after=75)
    assert liveness.expires_at() is None
    liveness.on_message(10)
    liveness.on_message(30)
    assert liveness.expires_at() == 105
    liveness.on_timer(105)
    assert liveness.expires_at() is None
