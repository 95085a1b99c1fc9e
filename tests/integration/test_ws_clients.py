"""What holds for both WebSocket clients (Home Assistant, Z-Wave JS), each against its fake
server (real sockets, a fake clock): the parts of a connection their shared base owns."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import pytest

from tests.fakes.home_assistant_server import FakeHomeAssistant
from tests.integration.ws_harness import HA_DOOR, ZW_DOOR, Fake


@pytest.fixture(params=["ha", "zw"], ids=["home_assistant", "zwavejs"])
def fake(request: pytest.FixtureRequest) -> Fake:
    """Each fake server in turn: conftest's ``ha``, then ``zw``."""
    server: Fake = request.getfixturevalue(request.param)
    return server


def open_the_door_unseen(fake: Fake) -> tuple[str, str]:
    """Open the front door in ``fake`` without an event, as while no client is connected;
    (its entity id, the state the client then delivers)."""
    if isinstance(fake, FakeHomeAssistant):
        fake.set_state(HA_DOOR, "on")
        return HA_DOOR, "on"
    fake.set_value(7, 113, "Access Control", 22, property_key="Door state")
    return ZW_DOOR, "22"


async def test_server_gone_then_back_on_the_same_port_with_what_changed(fake, harnesses, clock):
    harness = await harnesses.connected(fake)
    before = len(harness.states.calls)
    await fake.stop()
    lost = await harness.report.wait_for_event("disconnected")
    assert "closed by the server" in (lost.error or "")
    await harness.waits_until(0.5)
    clock.advance(0.5)
    await harness.waits_until(1.0)  # refused: nobody listens
    assert "Cannot connect" in (harness.health()["last_error"] or "")
    door = open_the_door_unseen(fake)
    await fake.start()
    clock.advance(1.0)
    await harness.report.wait_for_event("connected", 2)
    # Only what changed while away: the others were delivered before.
    assert [(c.entity_id, c.state) for c in harness.states.calls[before:]] == [door]


async def test_the_handshake_is_bounded_by_connect_timeout(fake, harnesses, clock):
    fake.silent = True  # upgrades, then never says a word (auth_required, version)
    harness = harnesses.start(fake)
    await fake.wait_for(lambda: len(fake.connections) == 1)
    await clock.wait_for_deadlines([10.0])
    clock.advance(10.0)
    lost = await harness.report.wait_for_event("disconnected")
    assert lost.error == "ConnectionLost: no handshake within 10 s"


@contextlib.asynccontextmanager
async def mute_listener() -> AsyncIterator[tuple[int, asyncio.Event]]:
    """A server that accepts TCP and never answers the HTTP upgrade: (port, accepted)."""
    accepted = asyncio.Event()

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.set()
        await reader.read()  # until the client goes

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], accepted
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("phase", ["tcp", "handshake", "backoff", "connected"])
async def test_stopping_returns_promptly_in_any_phase(fake, harnesses, phase):
    async with mute_listener() as (port, accepted):  # what the tcp phase connects to
        fake.silent = phase == "handshake"
        fake.refuse = phase == "backoff"
        if phase == "tcp":
            harness = harnesses.start(fake, url=f"{fake.scheme}://127.0.0.1:{port}")
        else:
            harness = harnesses.start(fake)
        if phase == "tcp":
            await asyncio.wait_for(accepted.wait(), 5)
        elif phase == "handshake":
            await fake.wait_for(lambda: len(fake.connections) == 1)
        elif phase == "backoff":
            await harness.waits_until(0.5)
        else:
            await harness.report.wait_for_event("connected")
        await harness.stop(timeout=1.0)
    assert harness.health()["state"] == "stopped"
    if phase == "connected":
        assert (harness.report.last.event, harness.report.last.error) == ("disconnected", "stopped")


async def test_a_frame_over_the_limit_costs_the_connection_not_the_client(fake, harnesses, clock):
    harness = await harnesses.connected(fake, max_frame_bytes=64 * 1024)
    await fake.send_raw(json.dumps({"type": "event", "event": {"pad": "x" * 100_000}}))
    lost = await harness.report.wait_for_event("disconnected")
    assert "max_frame_bytes" in (lost.error or "")
    assert harness.health()["malformed"] == {"too_big": 1}
    await harness.waits_until(0.5)
    clock.advance(0.5)
    await harness.report.wait_for_event("connected", 2)
