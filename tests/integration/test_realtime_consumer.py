"""``/ws/alarm/`` through the project's ASGI stack (origin check, auth) and the real Redis."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from django.core import signing

from config.asgi import application
from realtime import broadcast, receivers, snapshots, tokens
from realtime.hub import StatusHub
from realtime.status import INTEGRATIONS
from services.clock import FakeClock
from services.dbthread import AsyncStore
from tests.realtime_support import (  # noqa: F401 - fixtures
    AlarmSource,
    PrivateRedis,
    alarm_source_fixture,
    make_user,
    private_redis_fixture,
    realtime_group_fixture,
    session_cookie,
    ws_headers,
)

pytestmark = pytest.mark.django_db(transaction=True)

Connect = Callable[..., Awaitable[WebsocketCommunicator]]


@pytest.fixture
async def connect(realtime_group: str, alarm_source: AlarmSource) -> AsyncIterator[Connect]:
    opened: list[WebsocketCommunicator] = []

    async def open_(path: str = "/ws/alarm/", **headers: Any) -> WebsocketCommunicator:
        communicator = WebsocketCommunicator(application, path, headers=ws_headers(**headers))
        opened.append(communicator)
        return communicator

    yield open_
    for communicator in opened:
        await communicator.disconnect()


async def receive(communicator: WebsocketCommunicator, within: float = 5) -> dict[str, Any]:
    message: dict[str, Any] = await communicator.receive_json_from(within)
    return message


async def logged_in(connect: Connect, db_call: Any) -> WebsocketCommunicator:
    user = await db_call(make_user)
    communicator = await connect(cookie=await db_call(session_cookie, user))
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    return communicator


async def snapshots_of(communicator: WebsocketCommunicator) -> list[dict[str, Any]]:
    return [await receive(communicator), await receive(communicator)]


async def test_session_gets_alarm_then_system_status(
    connect: Connect, db_call: Any, alarm_source: AlarmSource
) -> None:
    communicator = await logged_in(connect, db_call)
    alarm, status = await snapshots_of(communicator)
    assert alarm["type"] == "alarm_state" and status["type"] == "system_status"
    assert alarm["payload"] == alarm_source.snapshot and alarm_source.calls == 1
    assert set(status["payload"]) == set(INTEGRATIONS)
    assert status["payload"]["mqtt"]["connected"] is False
    for message in (alarm, status):
        assert set(message) == {"type", "timestamp", "sequence", "payload"}
        assert isinstance(message["sequence"], int)


async def test_ping_pong(connect: Connect, db_call: Any) -> None:
    communicator = await logged_in(connect, db_call)
    await snapshots_of(communicator)
    await communicator.send_to(text_data='{"type": "ping"}')
    assert await receive(communicator) == {"type": "pong"}
    await communicator.send_to(text_data="not json")  # ignored, the socket stays up
    await communicator.send_to(text_data='{"type": "ping"}')
    assert await receive(communicator) == {"type": "pong"}


async def test_a_token_authenticates(connect: Connect, db_call: Any) -> None:
    user = await db_call(make_user)
    token = await db_call(tokens.make_token, user)
    communicator = await connect(f"/ws/alarm/?token={token}")
    assert (await communicator.connect(timeout=5))[0]
    alarm, status = await snapshots_of(communicator)
    assert (alarm["type"], status["type"]) == ("alarm_state", "system_status")


async def assert_closed_4401(communicator: WebsocketCommunicator) -> None:
    connected, _ = await communicator.connect(timeout=5)
    assert connected  # accepted, so that the close code reaches the client
    closing = await communicator.receive_output(5)
    assert closing == {"type": "websocket.close", "code": 4401}


async def test_anonymous_is_closed_with_4401(connect: Connect, alarm_source: AlarmSource) -> None:
    await assert_closed_4401(await connect())
    assert alarm_source.calls == 0


@pytest.mark.parametrize("problem", ["bad", "expired", "password_changed", "inactive"])
async def test_bad_tokens_are_closed_with_4401(
    connect: Connect, db_call: Any, settings: Any, problem: str
) -> None:
    user = await db_call(make_user)
    token = await db_call(tokens.make_token, user)
    if problem == "bad":
        token = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    elif problem == "expired":
        settings.REALTIME_TOKEN_MAX_AGE = -1
    elif problem == "password_changed":
        user.set_password("something else")
        await db_call(user.save)
    else:
        user.is_active = False
        await db_call(user.save)
    # a valid session does not rescue a bad token
    cookie = await db_call(session_cookie, await db_call(make_user))
    await assert_closed_4401(await connect(f"/ws/alarm/?token={token}", cookie=cookie))


def test_token_outcomes(db: None, settings: Any) -> None:
    user = make_user()
    token = tokens.make_token(user)
    assert tokens.check_token(token) == (user, "ok")
    assert tokens.check_token("nonsense") == (None, "invalid")
    forged = signing.dumps({"u": user.pk, "h": "0" * 20}, salt=tokens.SALT)
    assert tokens.check_token(forged) == (None, "invalid")
    other_salt = signing.dumps({"u": user.pk, "h": user.get_session_auth_hash()[:20]})
    assert tokens.check_token(other_salt) == (None, "invalid")
    settings.REALTIME_TOKEN_MAX_AGE = -1
    assert tokens.check_token(token) == (None, "expired")


@pytest.mark.parametrize("origin", ["http://evil.example", None])
async def test_a_foreign_origin_is_refused(connect: Connect, db_call: Any, origin: str) -> None:
    cookie = await db_call(session_cookie, await db_call(make_user))
    communicator = await connect(cookie=cookie, origin=origin)
    connected, _ = await communicator.connect(timeout=5)
    assert not connected


async def test_pushes_older_than_the_snapshot_are_dropped(connect: Connect, db_call: Any) -> None:
    communicator = await logged_in(connect, db_call)
    alarm, status = await snapshots_of(communicator)
    broadcast.system_status({"stale": True}, sequence=status["sequence"])  # already shown
    broadcast.system_status({"fresh": True}, sequence=status["sequence"] + 1)
    receivers.on_entity_state_changed(
        sender=None, entity={"entity_id": "binary_sensor.door", "state": "on"}
    )
    receivers.on_alarm_state_changed(sender=None, snapshot={"state": "armed_away"})
    got = [await receive(communicator) for _ in range(3)]
    by_type = {m["type"]: m for m in got}
    assert by_type["system_status"]["payload"] == {"fresh": True}
    assert by_type["entity_state"]["payload"]["entity_id"] == "binary_sensor.door"
    assert by_type["alarm_state"]["payload"] == {"state": "armed_away"}
    assert by_type["alarm_state"]["sequence"] > alarm["sequence"]
    assert await communicator.receive_nothing(0.2)


async def test_pushes_racing_the_snapshots_wait_for_them(
    connect: Connect, db_call: Any, alarm_source: AlarmSource, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pushes that arrive while the snapshots are read come after them, minus the stale."""
    from realtime.consumers import AlarmConsumer
    from realtime.models import IntegrationStatusRecord

    delivered = asyncio.Event()
    original = AlarmConsumer.deliver

    async def deliver(self: AlarmConsumer, items: list[list[Any]]) -> None:
        await original(self, items)
        if any(item[1] == 1001 for item in items):
            delivered.set()

    monkeypatch.setattr(AlarmConsumer, "deliver", deliver)

    await db_call(IntegrationStatusRecord.objects.create, integration="mqtt", sequence=1000)
    reading, release = threading.Event(), threading.Event()
    snapshot = alarm_source.snapshot

    def slow_source() -> dict[str, Any]:
        reading.set()
        assert release.wait(10)
        return dict(snapshot)

    previous = snapshots.set_alarm_snapshot_source(slow_source)
    try:
        cookie = await db_call(session_cookie, await db_call(make_user))
        communicator = await connect(cookie=cookie)
        connecting = asyncio.ensure_future(communicator.connect(timeout=10))
        assert await asyncio.to_thread(reading.wait, 10)  # joined, now reading the snapshots
        broadcast.system_status({"stale": True}, sequence=1000)  # what the snapshot shows
        assert broadcast.flush(5)
        broadcast.system_status({"fresh": True}, sequence=1001)
        async with asyncio.timeout(10):
            await delivered.wait()  # the relay handed both over while connect() still reads
        release.set()
        assert (await connecting)[0]
        got = [await receive(communicator) for _ in range(3)]
        assert [m["type"] for m in got] == ["alarm_state", "system_status", "system_status"]
        assert got[1]["sequence"] == 1000
        assert got[2]["payload"] == {"fresh": True}
        assert await communicator.receive_nothing(0.2)
    finally:
        snapshots.set_alarm_snapshot_source(previous)


async def test_sequence_grows_across_many_changes(
    connect: Connect, db_call: Any, stores: list[AsyncStore]
) -> None:
    """A hub with the real table and the real publisher, through Redis, to one client."""
    communicator = await logged_in(connect, db_call)
    _, snapshot = await snapshots_of(communicator)
    store_ = AsyncStore()
    stores.append(store_)
    clock = FakeClock()
    hub = StatusHub(clock, store_.call)
    stopping = asyncio.Event()
    task = asyncio.create_task(hub.run(stopping))
    try:
        flips = 200
        for n in range(flips):
            hub.report("mqtt", "connected" if n % 2 == 0 else "disconnected")
            if n % 7 == 0:
                await hub.settled()  # some written one by one, some coalesced
        await hub.settled()
        numbers = [snapshot["sequence"]]
        last: dict[str, Any] = {}
        while (
            not last
            or last["payload"]["mqtt"]["state"] != "offline"
            or not (await communicator.receive_nothing(0.3))
        ):
            last = await receive(communicator)
            assert last["type"] == "system_status"
            numbers.append(last["sequence"])
        assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
        assert len(numbers) - 1 <= hub.pushes
        assert last["payload"]["mqtt"]["state"] == "offline"  # the final state, flip 200
    finally:
        stopping.set()
        await task


async def test_reconnect_gets_a_fresh_snapshot(connect: Connect, db_call: Any) -> None:
    store_ = AsyncStore()
    try:
        hub = StatusHub(FakeClock(), store_.call)
        stopping = asyncio.Event()
        task = asyncio.create_task(hub.run(stopping))
        first = await logged_in(connect, db_call)
        await snapshots_of(first)
        await first.disconnect()
        hub.report("frigate", "available")  # while no client is connected
        await hub.settled()
        assert broadcast.flush(5)
        second = await logged_in(connect, db_call)
        _, status = await snapshots_of(second)
        assert status["payload"]["frigate"]["available"] is True
        stopping.set()
        await task
    finally:
        await store_.close()


async def test_redis_away_at_connect_closes_for_a_retry(
    connect: Connect, db_call: Any, settings: Any, private_redis: PrivateRedis
) -> None:
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [private_redis.url]},
        }
    }
    private_redis.stop()
    cookie = await db_call(session_cookie, await db_call(make_user))
    communicator = await connect(cookie=cookie)
    assert (await communicator.connect(timeout=5))[0]
    closing = await communicator.receive_output(10)
    assert closing == {"type": "websocket.close", "code": 1011}  # the page retries later


async def test_losing_redis_closes_every_socket_for_a_retry(
    connect: Connect, db_call: Any, settings: Any, private_redis: PrivateRedis
) -> None:
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [private_redis.url]},
        }
    }
    sockets = [await logged_in(connect, db_call) for _ in range(3)]
    for communicator in sockets:
        await snapshots_of(communicator)
    private_redis.stop()
    for communicator in sockets:
        closing = await communicator.receive_output(10)
        assert closing == {"type": "websocket.close", "code": 1011}


def test_the_message_shape() -> None:
    message = broadcast.message("system_status", {"a": 1}, sequence=7)
    assert list(message) == ["type", "timestamp", "sequence", "payload"]
    assert json.loads(json.dumps(message))["sequence"] == 7
