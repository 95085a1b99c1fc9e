"""The summary feed: a burst of hints becomes one read; the relay acts on hints, never forwards
them. No database, no Redis: the read and the channel layer are stand-ins."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from realtime.broadcast import PUSH_TYPE
from realtime.relay import Relay
from realtime.summary import KIND, SummaryFeed


class Reads:
    """Stands in for the summary read: numbered messages; ``hold`` keeps a read under way."""

    def __init__(self) -> None:
        self.count = 0
        self.hold: asyncio.Event | None = None
        self.started = asyncio.Event()
        self.fail = False

    async def __call__(self) -> dict[str, Any]:
        self.count += 1
        self.started.set()
        if self.hold is not None:
            await self.hold.wait()
        if self.fail:
            raise ConnectionError("the database is away")
        return {"type": KIND, "sequence": self.count, "payload": {"jobs": [], "runs": []}}


class Delivered:
    def __init__(self) -> None:
        self.items: list[list[Any]] = []

    async def __call__(self, items: list[list[Any]]) -> None:
        self.items += items


async def test_a_burst_of_hints_is_one_read_and_one_push() -> None:
    reads, delivered = Reads(), Delivered()
    feed = SummaryFeed(delivered, read=reads, window=0)
    for _ in range(50):
        feed.changed()
    await feed.idle()
    assert reads.count == 1 and feed.hints == 50
    [(kind, number, text)] = delivered.items
    assert kind == KIND and number == 1 and json.loads(text)["payload"] == {"jobs": [], "runs": []}


async def test_hints_during_a_read_make_one_more_read_not_one_each() -> None:
    reads, delivered = Reads(), Delivered()
    reads.hold = asyncio.Event()
    feed = SummaryFeed(delivered, read=reads, window=0)
    feed.changed()
    await reads.started.wait()
    for _ in range(20):
        feed.changed()  # committed after the read began: it may not show them
    reads.hold.set()
    await feed.idle()
    assert reads.count == 2
    assert [number for _, number, _ in delivered.items] == [1, 2]


async def test_no_hint_no_read() -> None:
    reads, delivered = Reads(), Delivered()
    feed = SummaryFeed(delivered, read=reads, window=0)
    await feed.idle()
    assert reads.count == 0 and delivered.items == []


async def test_a_failed_read_is_counted_and_the_next_hint_reads_again() -> None:
    reads, delivered = Reads(), Delivered()
    reads.fail = True
    feed = SummaryFeed(delivered, read=reads, window=0)
    feed.changed()
    await feed.idle()
    assert feed.failures == 1 and delivered.items == []
    reads.fail = False
    feed.changed()
    await feed.idle()
    assert feed.reads == 1 and len(delivered.items) == 1


class QueueLayer:
    """The channel-layer calls the relay makes, over one in-memory queue."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def new_channel(self) -> str:
        return "relay-channel"

    async def group_add(self, group: str, channel: str) -> None:
        pass

    async def group_discard(self, group: str, channel: str) -> None:
        pass

    async def receive(self, channel: str) -> dict[str, Any]:
        return await self.queue.get()


class Member:
    def __init__(self) -> None:
        self.items: list[list[Any]] = []
        self.got = asyncio.Event()

    async def deliver(self, items: list[list[Any]]) -> None:
        self.items += items
        self.got.set()

    async def lost(self) -> None:
        pass


async def test_the_relay_turns_hints_into_one_summary_and_forwards_the_rest() -> None:
    layer, reads = QueueLayer(), Reads()
    relay = Relay(
        layer=lambda: layer,
        group=lambda: "group",
        summaries=lambda deliver: SummaryFeed(deliver, read=reads, window=0),
    )
    members = [Member(), Member()]
    for member in members:
        await relay.join(member)
    hint = ["task_runs_changed", 5, "{}"]
    await layer.queue.put({"type": PUSH_TYPE, "items": [hint, ["system_status", 6, "{}"]]})
    await layer.queue.put({"type": PUSH_TYPE, "items": [hint]})
    async with asyncio.timeout(5):
        while relay.received < 2 or len(members[0].items) < 2:
            await members[0].got.wait()
            members[0].got.clear()
    await relay.summaries.idle()
    for member in members:
        kinds = [kind for kind, _, _ in member.items]
        assert kinds == ["system_status", KIND]  # the hints never reach a client as they are
    assert reads.count == 1  # both hints in one read: once for every member of the process
    for member in members:
        relay.leave(member)
