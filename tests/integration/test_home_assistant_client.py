"""HomeAssistantClient against the fake Home Assistant (real sockets, a fake clock); what it
shares with the Z-Wave JS client is in test_ws_clients.py. ``ha``, ``harnesses`` and ``clock``
are conftest's fixtures."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.integration.ws_harness import HA_DOOR as DOOR
from tests.integration.ws_harness import H, T


async def test_auth_ok_connects_and_every_state_then_each_change_reaches_on_state(ha, harnesses):
    harness = await harnesses.connected(ha)
    connect = harness.report.last
    assert harness.report.events() == ["connecting", "connected"]
    assert connect.integration == "home_assistant"
    assert connect.details == {"version": ha.version, "url": ha.url, "entities": 3}
    door = harness.states.calls_for(DOOR)[0]
    assert (door.state, door.source, door.name) == ("off", "home_assistant", "Front door")
    assert door.attributes == {"friendly_name": "Front door", "device_class": "door"}
    assert door.at == datetime(2025, 6, 1, 10, 0, tzinfo=UTC)  # Home Assistant's last_changed
    assert {c.entity_id for c in harness.states.calls} == {DOOR, "lock.back", "sensor.power"}
    # Subscribed first, fetched second: nothing can fall between the two.
    assert [m["type"] for m in ha.received] == ["subscribe_events", "get_states"]

    assert await ha.push_state(DOOR, "on", {"friendly_name": "Front door"}) == 1
    await harness.states.wait_for(lambda: harness.states.state_of(DOOR) == "on")
    assert harness.health()["state"] == "connected" and harness.health()["events"] == 1


async def test_a_change_time_ahead_of_our_clock_is_taken_as_now(ha, harnesses, clock):
    harness = await harnesses.connected(ha)
    await ha.push_state(DOOR, "on", last_changed="2099-01-01T00:00:00+00:00")
    await harness.states.wait_for(lambda: harness.states.state_of(DOOR) == "on")
    assert harness.states.calls_for(DOOR)[-1].at == clock.now()


async def test_auth_invalid_is_an_error_and_no_reconnect_storm(ha, harnesses, clock):
    harness = harnesses.start(ha, token="wrong-token")
    failed = await harness.report.wait_for_event("auth_failed")
    assert failed.error == "Invalid access token"
    assert harness.health()["state"] == "auth_failed"
    # Nothing but a restart (a configuration change) or stopping can wake it: no timer.
    assert clock.sleepers == 0 and harness.rng.calls == 0
    for _ in range(24 * 4):
        clock.advance(15 * 60)
    with pytest.raises(TimeoutError):
        await ha.wait_for(lambda: ha.attempts > 1, timeout=0.3)
    assert (ha.attempts, ha.auth_invalid) == (1, 1)
    assert harness.report.events() == ["connecting", "auth_failed"]


async def test_auth_retry_interval_paces_the_retries(ha, harnesses, clock):
    harness = harnesses.start(ha, token="wrong-token", auth_retry_interval=600.0)
    for attempt in range(1, 13):  # two hours
        await harness.waits_until(600.0)
        assert (ha.attempts, ha.auth_invalid) == (attempt, attempt)
        clock.advance(599.9)
        assert clock.sleepers == 1, "retried early"
        clock.advance(0.1)
    await ha.wait_for(lambda: ha.auth_invalid >= 13)
    assert harness.report.events() == ["connecting", "auth_failed"]  # one error, shown once


async def test_a_dropped_connection_reconnects_with_backoff_and_catches_up(ha, harnesses, clock):
    harness = await harnesses.connected(ha)
    before = len(harness.states.calls)
    ha.refuse = True  # the next attempts get 503
    await ha.drop_connections()
    lost = await harness.report.wait_for_event("disconnected")
    assert "closed by the server" in (lost.error or "")
    ha.set_state(DOOR, "on", {"friendly_name": "Front door"})  # changed while away
    ha.set_state("binary_sensor.window", "on", {"friendly_name": "Window"})  # new while away

    for failures, delay in enumerate([0.5, 1.0, 2.0, 4.0], start=1):  # 1 s doubling, half jitter
        await harness.waits_until(delay)
        assert ha.attempts == failures
        clock.advance(delay - 0.01)
        assert clock.sleepers == 1, f"backoff {failures} ended before {delay} s"
        if failures == 4:
            ha.refuse = False
        clock.advance(0.02)

    await harness.report.wait_for_event("connected", 2)
    caught_up = {c.entity_id: c.state for c in harness.states.calls[before:]}
    assert caught_up == {DOOR: "on", "binary_sensor.window": "on"}  # unchanged ones not offered
    events = [(c.event, (c.error or "")[:24]) for c in harness.report.calls]
    assert events == [
        ("connecting", ""),
        ("connected", ""),
        ("disconnected", "ConnectionLost: closed b"),
        ("disconnected", "WSServerHandshakeError: "),  # once, though refused three times
        ("connected", ""),
    ]
    assert harness.health()["reconnects"] == 1

    await ha.drop_connections()  # a session that got live resets the backoff
    await harness.waits_until(0.5)
    clock.advance(0.5)
    await harness.report.wait_for_event("connected", 3)


async def test_a_silent_connection_is_noticed_within_heartbeat_plus_timeout(ha, harnesses, clock):
    harness = await harnesses.connected(ha)
    ha.silent = True  # half-open: the socket stays, nothing comes back
    await harness.waits_until(H)
    clock.advance(H)
    await harness.waits_until(T)  # the ping went out; the pong does not come
    assert harness.health()["pings"] == 1
    clock.advance(T - 0.01)
    assert clock.sleepers == 1 and harness.report.events()[-1] == "connected"
    clock.advance(0.02)  # heartbeat + timeout after the last frame (0.01 of float slack)
    lost = await harness.report.wait_for_event("disconnected")
    assert lost.error == "HeartbeatTimeout: no pong within 10 s"
    assert harness.health()["pong_timeouts"] == 1
    ha.silent = False
    await harness.waits_until(0.5)
    clock.advance(0.5)
    await harness.report.wait_for_event("connected", 2)


async def test_pongs_keep_a_quiet_connection_up_and_traffic_spares_the_pings(ha, harnesses, clock):
    harness = await harnesses.connected(ha)
    for pings in (1, 2, 3):  # quiet: one ping per interval, each answered
        await harness.waits_until(H)
        clock.advance(H)
        await ha.wait_for(lambda n=pings: ha.pings >= n)
    await harness.waits_until(H)
    clock.advance(H / 2)
    await ha.push_state(DOOR, "on")  # a frame half-way: the next check finds it recent
    await harness.states.wait_for(lambda: harness.states.state_of(DOOR) == "on")
    clock.advance(H / 2)
    await harness.waits_until(H / 2)  # woke, saw the frame, sleeps the rest: no ping
    assert ha.pings == 3 and harness.health()["pings"] == 3
    clock.advance(H / 2)
    await ha.wait_for(lambda: ha.pings == 4)
    assert harness.report.events() == ["connecting", "connected"]


def state_changed(entity_id: Any, new_state: Any) -> str:
    """A ``state_changed`` event frame (of the subscription with id 1)."""
    data = {"entity_id": entity_id, "new_state": new_state}
    return json.dumps({"id": 1, "type": "event", "event": {"data": data}})


def fuzz_frames(rng: random.Random, count: int) -> list[tuple[str | bytes, str]]:
    """(frame, the malformed reason it must be counted under); each counts exactly once."""
    good_state = {"entity_id": DOOR, "state": "on", "attributes": {}}
    makers: list[Callable[[], tuple[str | bytes, str]]] = [
        lambda: (
            "{" + "".join(rng.choices('{}[]":,ab1', k=rng.randint(0, 40))) + ",",
            "bad_json",
        ),  # a trailing comma: never valid JSON
        lambda: (json.dumps(rng.choice([1, 2.5, "x", None, True])), "not_object"),
        lambda: (json.dumps({"id": 1, "no": "type"}), "bad_message"),
        lambda: (json.dumps({"type": rng.choice([1, None, [], {}])}), "bad_message"),
        lambda: (
            json.dumps({"type": "pong", "id": rng.choice(["1", -3, 2.5, True])}),
            "bad_message",
        ),
        lambda: (json.dumps({"type": f"new_type_{rng.randint(0, 99)}", "id": 5}), "unknown_type"),
        lambda: (json.dumps({"type": "result", "id": 999, "success": True}), "unexpected"),
        lambda: (json.dumps({"type": "pong", "id": 10_000}), "unexpected"),
        lambda: (json.dumps({"type": "auth_ok"}), "unexpected"),
        lambda: (
            json.dumps({"id": 1, "type": "event", "event": rng.choice([None, 3, {}])}),
            "bad_event",
        ),
        lambda: (
            state_changed(rng.choice(["Bad.Id", "nodot", 7, None, "a" * 300]), good_state),
            "bad_entity_id",
        ),
        lambda: (
            state_changed(DOOR, {**good_state, "state": rng.choice([None, 5, [], "x" * 300])}),
            "bad_state",
        ),
        lambda: (state_changed(DOOR, {**good_state, "attributes": "big " * 2000}), "bad_state"),
        lambda: (bytes(rng.randbytes(rng.randint(1, 64))), "binary"),
    ]
    return [rng.choice(makers)() for _ in range(count)]


async def test_thousands_of_malformed_frames_are_counted_logged_rarely_and_harmless(
    ha, harnesses, clock, caplog
):
    harness = await harnesses.connected(ha)
    frames = fuzz_frames(random.Random(5), 3000)
    with caplog.at_level(logging.WARNING):
        for frame, _ in frames:
            await ha.send_raw(frame)
        await ha.push_state(DOOR, "on")  # the stream is still read, in order
        await harness.states.wait_for(lambda: harness.states.state_of(DOOR) == "on", 10)
    expected: dict[str, int] = {}
    for _, reason in frames:
        expected[reason] = expected.get(reason, 0) + 1
    assert harness.health()["malformed"] == expected
    assert harness.health()["connects"] == 1 and harness.report.events()[-1] == "connected"
    logged = [r for r in caplog.records if getattr(r, "event", "") == "home_assistant.malformed"]
    assert len(logged) == 1  # the fake clock stood still: one line per minute at most
    clock.advance(60)
    await ha.send_raw("{still bad")
    await ha.push_state(DOOR, "off")  # read after the bad frame: once here, that was counted
    await harness.states.wait_for(lambda: harness.states.state_of(DOOR) == "off")
    logged = [r for r in caplog.records if getattr(r, "event", "") == "home_assistant.malformed"]
    assert len(logged) == 2 and logged[1].not_logged_since_last == len(frames) - 1


async def test_an_on_state_failure_is_counted_and_offered_again_after_a_reconnect(
    ha, harnesses, clock
):
    harness = harnesses.make(ha)
    harness.states.fail_for.add(DOOR)
    harness.start()
    await harness.report.wait_for_event("connected")
    assert harness.health()["on_state_errors"] == 1
    assert harness.states.state_of("lock.back") == "locked"  # the others went through
    harness.states.fail_for.clear()
    calls = len(harness.states.calls)
    await ha.drop_connections()
    await harness.waits_until(0.5)
    clock.advance(0.5)
    await harness.report.wait_for_event("connected", 2)
    assert [c.entity_id for c in harness.states.calls[calls:]] == [DOOR]


async def test_filters_and_removed_entities(ha, harnesses):
    harness = await harnesses.connected(
        ha, include=("binary_sensor.*", "lock.*"), exclude=("lock.*",)
    )
    assert {c.entity_id for c in harness.states.calls} == {DOOR}
    await ha.push_state("sensor.power", "231")
    await ha.remove_state(DOOR)
    await ha.push_state("binary_sensor.window", "on")
    await harness.states.wait_for(lambda: harness.states.state_of("binary_sensor.window") == "on")
    assert harness.health()["filtered"] == 3  # lock.back, sensor.power twice
    assert harness.health()["removed"] == 1
    assert [c.entity_id for c in harness.states.calls] == [DOOR, "binary_sensor.window"]


async def test_the_token_is_never_logged_reported_or_shown(ha, harnesses, caplog):
    with caplog.at_level(logging.DEBUG):
        good = await harnesses.connected(ha)
        bad = harnesses.make(ha, token="wrong-secret-xyz")
        bad.start()
        await bad.report.wait_for_event("auth_failed")
        await good.stop()
        await bad.stop()
    for secret in (ha.token, "wrong-secret-xyz"):
        assert secret not in caplog.text
        assert secret not in repr(good.report.calls) + repr(bad.report.calls)
        assert secret not in json.dumps([good.health(), bad.health()])


async def test_a_resync_slower_than_heartbeat_plus_timeout_keeps_the_connection(
    ha, harnesses, clock
):
    for n in range(12):
        ha.set_state(f"sensor.slow_{n}", str(n))

    async def slow_write(entity_id: str, *args: Any, **kwargs: Any) -> bool:
        clock.advance(5.0)  # each database write takes 5 s: 75 s for the whole snapshot
        await asyncio.sleep(0)  # let the heartbeat look at the clock meanwhile
        return True

    harness = harnesses.start(ha, on_state=slow_write)
    await harness.report.wait_for_event("connected")
    assert clock.monotonic() == 75.0  # longer than heartbeat + timeout (40 s)
    assert harness.health()["pong_timeouts"] == 0 and ha.attempts == 1
    # The heartbeat re-checks and sleeps until 30 s after the last write: no ping before.
    [wake] = clock.deadlines()
    assert 75.0 < wake <= 105.0
    if wake < 105.0:
        clock.advance(wake - 75.0)
        await clock.wait_for_deadlines([105.0])
    assert harness.health()["pings"] == 0
