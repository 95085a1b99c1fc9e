"""The periodic Home Assistant sync against the fake's REST API."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import aiohttp
import pytest

from services.integrations.ha_sync import KnownState, SyncError, diff_states, sync_states
from services.integrations.home_assistant import HomeAssistantSettings
from services.integrations.ws_support import EntityState
from tests.fakes.home_assistant_server import FakeHomeAssistant, running_fake_home_assistant
from tests.fakes.recorders import RecordingStates

NOW = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)


@pytest.fixture
async def ha() -> AsyncIterator[FakeHomeAssistant]:
    async with running_fake_home_assistant() as fake:
        fake.set_state(
            "binary_sensor.door",
            "on",
            {"friendly_name": "Door"},
            last_changed="2025-06-02T11:00:00+00:00",
        )
        fake.set_state("lock.back", "locked", {"friendly_name": "Back"})
        fake.set_state("sensor.power", "230", {"unit_of_measurement": "W"})
        yield fake


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as http:
        yield http


def settings_for(ha: FakeHomeAssistant, **overrides: object) -> HomeAssistantSettings:
    return dataclasses.replace(HomeAssistantSettings(ha.url, ha.token), **overrides)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("known", "changed", "unchanged"),
    [
        ({}, ["a.x", "b.y"], 0),
        ({"a.x": KnownState("on", {}), "b.y": KnownState("1", {"u": "W"})}, [], 2),
        ({"a.x": KnownState("off", {}), "b.y": KnownState("1", {"u": "W"})}, ["a.x"], 1),
        ({"a.x": KnownState("on", {}), "b.y": KnownState("1", {"u": "kW"})}, ["b.y"], 1),
        ({"a.x": KnownState("on", {"extra": 1}), "z.z": KnownState("1", {})}, ["a.x", "b.y"], 0),
    ],
)
def test_diff_states(known, changed, unchanged):
    fetched = [EntityState("a.x", "on", {}), EntityState("b.y", "1", {"u": "W"})]
    found, same = diff_states(fetched, known)
    assert ([e.entity_id for e in found], same) == (changed, unchanged)


async def test_only_what_differs_is_handed_to_on_state(ha, session):
    known = {
        "binary_sensor.door": KnownState("off", {"friendly_name": "Door"}),  # changed
        "lock.back": KnownState("locked", {"friendly_name": "Back"}),  # same
        "sensor.gone": KnownState("1", {}),  # removed in Home Assistant
    }
    states = RecordingStates()
    result = await sync_states(
        settings_for(ha), session=session, on_state=states, known=known, now=NOW
    )
    assert [(c.entity_id, c.state) for c in states.calls] == [
        ("binary_sensor.door", "on"),
        ("sensor.power", "230"),
    ]
    door = states.calls[0]
    assert (door.source, door.name, door.at) == (
        "home_assistant",
        "Door",
        datetime(2025, 6, 2, 11, 0, tzinfo=UTC),
    )
    assert result.as_dict() == {
        "fetched": 3,
        "rejected": 0,
        "filtered": 0,
        "unchanged": 1,
        "changed": 2,
        "written": 2,
        "failed": 0,
        "missing": 1,
        "errors": [],
    }
    assert ha.rest_requests == [("/api/states", f"Bearer {ha.token}")]


async def test_filters_bad_items_and_failing_writes_are_counted(ha, session):
    ha.states["bad"] = {"entity_id": "Not An Id", "state": "on"}
    states = RecordingStates()
    states.fail_for.add("lock.back")
    result = await sync_states(
        settings_for(ha, exclude=("sensor.*",)), session=session, on_state=states, known={}, now=NOW
    )
    assert (result.fetched, result.rejected, result.filtered) == (3, 1, 1)
    assert (result.changed, result.written, result.failed) == (2, 1, 1)
    assert result.errors[0].startswith("bad_entity_id")
    assert "lock.back: RuntimeError" in result.errors[1]


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("bad_token", r"refused the token \(HTTP 401\)"),
        ("server_error", "answered HTTP 500"),
        ("gone", "GET /api/states failed: ClientConnectorError"),
        ("not_a_list", "something else than a list"),
        ("too_big", "more than max_frame_bytes"),
    ],
)
async def test_failures_raise_sync_error_without_the_token(ha, session, setup, message):
    settings = settings_for(ha)
    if setup == "bad_token":
        settings = settings_for(ha, token="wrong-secret")
    elif setup == "server_error":
        ha.rest_status = 500
    elif setup == "gone":
        await ha.stop()
    elif setup == "not_a_list":
        ha.states_body = {"message": "API running."}
    elif setup == "too_big":
        ha.set_state("sensor.big", "x", {"blob": "x" * 5000})
        settings = settings_for(ha, max_frame_bytes=2048)
    with pytest.raises(SyncError, match=message) as caught:
        await sync_states(settings, session=session, on_state=RecordingStates(), known={})
    assert settings.token not in str(caught.value)
