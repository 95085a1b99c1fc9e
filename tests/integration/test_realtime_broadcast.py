"""The publisher: never blocks, coalesces, survives a Redis outage; dead group members expire."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from channels_redis.core import RedisChannelLayer

from realtime import broadcast
from realtime.broadcast import Publisher, Push
from tests.realtime_support import (  # noqa: F401 - fixtures
    PrivateRedis,
    private_redis_fixture,
)


def group() -> str:
    return f"test_broadcast_{uuid.uuid4().hex[:12]}"


def push(n: int, key: str = "system_status") -> Push:
    return Push("system_status", key, n, f'{{"n": {n}}}')


class Receiver:
    """One channel in ``group`` on ``layer``, as a consumer would be."""

    def __init__(self, layer: RedisChannelLayer, group_: str) -> None:
        self.layer, self.group = layer, group_
        self.channel = ""

    async def join(self) -> None:
        self.channel = self.channel or await self.layer.new_channel()
        await self.layer.group_add(self.group, self.channel)

    async def next_items(self, within: float = 5) -> list[list[Any]]:
        async with asyncio.timeout(within):
            message = await self.layer.receive(self.channel)
        assert message["type"] == broadcast.PUSH_TYPE
        items: list[list[Any]] = message["items"]
        return items


@pytest.fixture
async def layer(settings: Any) -> AsyncIterator[RedisChannelLayer]:
    made = RedisChannelLayer(hosts=[settings.REDIS_URL], capacity=100, expiry=60)
    yield made
    await made.close_pools()


def publisher_for(layer: RedisChannelLayer, group_: str, **kwargs: Any) -> Publisher:
    return Publisher(layer=lambda: layer, group=lambda: group_, **kwargs)


async def test_sync_and_async_callers(layer: RedisChannelLayer) -> None:
    name = group()
    receiver = Receiver(layer, name)
    await receiver.join()
    publisher = publisher_for(layer, name)
    try:
        publisher.submit(push(1))  # from the event loop
        assert (await receiver.next_items())[0][1] == 1
        thread = threading.Thread(target=publisher.submit, args=(push(2),))  # an ORM thread
        thread.start()
        thread.join()
        items = await receiver.next_items()
        assert items == [["system_status", 2, '{"n": 2}']]
    finally:
        publisher.close()


class HangingLayer:
    """A layer whose group_send never returns until released: Redis half-open."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()
        self.sent: list[dict[str, Any]] = []

    async def group_send(self, group_: str, message: dict[str, Any]) -> None:
        self.entered.set()
        await asyncio.to_thread(self.release.wait)
        self.sent.append(message)


def test_callers_never_wait_and_bursts_coalesce() -> None:
    hanging = HangingLayer()
    publisher = Publisher(layer=lambda: hanging, group=lambda: "g", send_timeout=30)
    try:
        publisher.submit(push(1))
        assert hanging.entered.wait(5)
        started = time.monotonic()
        for n in range(2, 52):
            publisher.submit(push(n))  # while the first send hangs
            publisher.submit(push(n, key=f"entity_state:e{n % 3}"))
        assert time.monotonic() - started < 1.0  # 100 submits, none waited on the send
        assert not publisher.flush(0.05)
        hanging.release.set()
        assert publisher.flush(5)
        first, rest = hanging.sent[0]["items"], hanging.sent[1:]
        assert first == [["system_status", 1, '{"n": 1}']]
        later = [item for message in rest for item in message["items"]]
        # the newest system_status and the newest of each entity: 4 pushes, not 100
        assert sorted((i[0], i[1]) for i in later) == [
            ("system_status", 49),
            ("system_status", 50),
            ("system_status", 51),
            ("system_status", 51),
        ]
        assert publisher.dropped == 100 - 4
    finally:
        publisher.close()


async def test_a_redis_outage_is_survived(
    private_redis: PrivateRedis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="realtime.broadcast")
    layer = RedisChannelLayer(hosts=[private_redis.url])  # the worker's
    name = group()
    receiver = Receiver(RedisChannelLayer(hosts=[private_redis.url]), name)  # a web process's
    await receiver.join()
    publisher = publisher_for(layer, name, retry_base=0.05, retry_cap=0.2, send_timeout=2)
    try:
        publisher.submit(push(1))
        assert (await receiver.next_items())[0][1] == 1
        private_redis.stop()
        await receiver.layer.close_pools()
        for n in range(2, 40):
            publisher.submit(push(n))  # the worker goes on: nothing raises, nothing waits
        ok = await asyncio.to_thread(publisher.wait_for, lambda p: p.failed_sends >= 3, 10)
        assert ok
        failed = [r for r in caplog.records if getattr(r, "event", "") == "realtime.publish_failed"]
        assert len(failed) == 1  # logged once, not per retry
        private_redis.start()  # an empty Redis: consumers join again when they reconnect
        receiver = Receiver(RedisChannelLayer(hosts=[private_redis.url]), name)
        await receiver.join()
        publisher.submit(push(100))
        seen: list[int] = []
        while 100 not in seen:
            seen += [item[1] for item in await receiver.next_items(10)]
        assert set(seen) <= {39, 100}  # at most the newest from the outage, then the new one
        # the receiver may see the push before the publisher's thread logs its recovery
        assert await asyncio.to_thread(publisher.wait_for, lambda p: p.sent >= 2, 10)
        events = [getattr(r, "event", "") for r in caplog.records]
        assert events.count("realtime.publish_recovered") == 1
        assert events.count("realtime.publish_failed") == 1
    finally:
        publisher.close()
        await layer.close_pools()
        await receiver.layer.close_pools()


async def members(layer: RedisChannelLayer, group_: str) -> dict[str, float]:
    connection = layer.connection(0)
    found = await connection.zrange(layer._group_key(group_), 0, -1, withscores=True)
    return {name.decode(): score for name, score in found}


@pytest.mark.parametrize("dead_since", ["long_ago", "just_now"])
async def test_a_dead_consumer_leaves_the_group(
    settings: Any, caplog: pytest.LogCaptureFixture, dead_since: str
) -> None:
    """A member nobody renews expires after group_expiry instead of going over capacity.

    "just_now" is the control: a dead member still inside group_expiry does fill its
    queue and makes every send log "over capacity", which is what the expiry bounds.
    """
    caplog.set_level(logging.INFO, logger="channels_redis.core")
    expiry = settings.CHANNEL_LAYERS["default"]["CONFIG"]["group_expiry"]
    layer = RedisChannelLayer(hosts=[settings.REDIS_URL], capacity=100, group_expiry=expiry)
    name = group()
    receiver = Receiver(layer, name)
    await receiver.join()
    dead = f"specific.{uuid.uuid4().hex}!dead"  # a channel of a web process that died
    stamp = time.time() - (expiry + 1 if dead_since == "long_ago" else 0)
    await layer.connection(0).zadd(layer._group_key(name), {dead: stamp})
    publisher = publisher_for(layer, name)
    try:
        for n in range(1, 121):
            publisher.submit(push(n))
            assert (await receiver.next_items())[0][1] == n  # the live one gets every push
        over = [r for r in caplog.records if "over capacity" in r.getMessage()]
        if dead_since == "long_ago":
            assert dead not in await members(layer, name)
            assert over == []
        else:
            assert dead in await members(layer, name)
            assert over  # the trap itself
    finally:
        publisher.close()
        await layer.connection(0).delete(layer.prefix + dead.split("!")[0] + "!")
        await layer.close_pools()
