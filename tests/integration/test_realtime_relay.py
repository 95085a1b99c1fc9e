"""The web process's relay: one group member per process, pushes fanned out in memory."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from channels_redis.core import RedisChannelLayer

from realtime.broadcast import PUSH_TYPE
from realtime.relay import JoinFailed, Relay
from tests.realtime_support import (  # noqa: F401 - fixtures
    PrivateRedis,
    private_redis_fixture,
)


class Member:
    def __init__(self, *, broken: bool = False) -> None:
        self.items: list[list[Any]] = []
        self.got = asyncio.Event()
        self.lost_it = asyncio.Event()
        self.broken = broken

    async def deliver(self, items: list[list[Any]]) -> None:
        if self.broken:
            raise ConnectionResetError("the client went away")
        self.items += items
        self.got.set()

    async def lost(self) -> None:
        self.lost_it.set()


@pytest.fixture
async def layer(settings: Any) -> AsyncIterator[RedisChannelLayer]:
    made = RedisChannelLayer(hosts=[settings.REDIS_URL], group_expiry=300)
    yield made
    await made.close_pools()


async def members_of(layer: RedisChannelLayer, group: str) -> list[str]:
    found = await layer.connection(0).zrange(layer._group_key(group), 0, -1)
    return [name.decode() for name in found]


async def send(layer: RedisChannelLayer, group: str, number: int) -> None:
    await layer.group_send(group, {"type": PUSH_TYPE, "items": [["system_status", number, "{}"]]})


async def test_one_member_per_process_for_every_consumer(layer: RedisChannelLayer) -> None:
    group = f"test_relay_{uuid.uuid4().hex[:12]}"
    relay = Relay(layer=lambda: layer, group=lambda: group)
    members = [Member(), Member(broken=True), Member()]
    for member in members:
        await relay.join(member)
    assert len(await members_of(layer, group)) == 1
    await send(layer, group, 7)
    async with asyncio.timeout(5):
        await members[0].got.wait()
        await members[2].got.wait()  # the broken one in between did not stop it
    assert members[0].items == members[2].items == [["system_status", 7, "{}"]]
    session = relay._task
    assert session is not None
    for member in members:
        relay.leave(member)
    async with asyncio.timeout(5):
        await asyncio.wait({session})
    assert await members_of(layer, group) == []  # the last one out left the group


async def test_the_relay_renews_its_membership(
    layer: RedisChannelLayer, monkeypatch: pytest.MonkeyPatch
) -> None:
    group = f"test_relay_{uuid.uuid4().hex[:12]}"
    relay = Relay(layer=lambda: layer, group=lambda: group, refresh=0.01)
    renewed = asyncio.Event()
    calls = 0
    original = layer.group_add

    async def group_add(group_: str, channel: str) -> None:
        nonlocal calls
        await original(group_, channel)
        calls += 1
        if calls >= 3:
            renewed.set()

    monkeypatch.setattr(layer, "group_add", group_add)
    member = Member()
    await relay.join(member)
    before = await layer.connection(0).zrange(layer._group_key(group), 0, -1, withscores=True)
    async with asyncio.timeout(5):
        await renewed.wait()
    after = await layer.connection(0).zrange(layer._group_key(group), 0, -1, withscores=True)
    assert after[0][1] >= before[0][1]  # the entry's time moves on while the process lives
    relay.leave(member)


async def test_join_fails_and_losses_are_told(private_redis: PrivateRedis) -> None:
    group = f"test_relay_{uuid.uuid4().hex[:12]}"
    layer = RedisChannelLayer(hosts=[private_redis.url])
    relay = Relay(layer=lambda: layer, group=lambda: group)
    try:
        first, second = Member(), Member()
        await relay.join(first)
        await relay.join(second)
        private_redis.stop()
        async with asyncio.timeout(10):
            await first.lost_it.wait()
            await second.lost_it.wait()
        assert relay.members == set()
        with pytest.raises(JoinFailed):
            await relay.join(Member())  # Redis still away
        assert relay.members == set()
        private_redis.start()
        fresh = Member()
        await relay.join(fresh)  # a new relay session
        await send(layer, group, 1)
        async with asyncio.timeout(5):
            await fresh.got.wait()
        relay.leave(fresh)
    finally:
        await layer.close_pools()
