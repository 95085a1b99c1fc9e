"""The web process's side of the pushes: one group member per process, fanned out in memory.

Every ``/ws/alarm/`` consumer of a process joins the process's ``Relay`` instead of the
channel-layer group. The relay is the one member of the group for the whole process (its own
channel, joined when the first consumer arrives, left when the last one goes) and hands each
group message to every consumer it holds. Why not one group member per consumer, as channels
usually does:

* cost: channels-redis wakes, buffers and re-dispatches a message per consumer (a few tasks
  each, and channels' close_old_connections thread hop); with 50 sockets that was most of a
  push's time. Here a push costs one receive per process and one WebSocket send per client.
* the capacity trap: a dead consumer can only be left in the group together with its whole
  process, and then it is one member, renewed every ``MEMBERSHIP_REFRESH`` s while alive, so a
  dead one drops out after ``group_expiry`` (settings) instead of filling its queue to
  capacity and making every send log "over capacity".

Hints (``broadcast.HINT_KINDS``: jobs or runs changed) are not handed on as they are: the
relay's ``SummaryFeed`` (``realtime.summary``) reads the jobs and runs once per burst and
hands the result, a ``task_runs`` message, to every consumer.

When Redis goes away the relay's receive fails: it closes every socket it holds with 1011 and
stops; the clients reconnect (with backoff), and their new consumers start a new relay and get
fresh snapshots, which is what makes missed pushes harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Callable
from typing import Any, Protocol

from realtime.broadcast import (
    HINT_KINDS,
    MEMBERSHIP_REFRESH,
    PUSH_TYPE,
    default_layer,
    group_name,
)
from realtime.summary import SummaryFeed
from services.ratelimit_log import RateLimitedLog

logger = logging.getLogger(__name__)
_log = RateLimitedLog(logger)


class Member(Protocol):
    async def deliver(self, items: list[list[Any]]) -> None: ...

    async def lost(self) -> None: ...


class JoinFailed(RuntimeError):
    """The relay could not join the channel-layer group (Redis away)."""


class Relay:
    def __init__(
        self,
        *,
        layer: Callable[[], Any] = default_layer,
        group: Callable[[], str] = group_name,
        refresh: float | None = None,
        summaries: Callable[..., SummaryFeed] = SummaryFeed,
    ) -> None:
        self._layer, self._group, self._refresh = layer, group, refresh
        self.members: set[Member] = set()
        self.summaries = summaries(self._fan_out)
        self._task: asyncio.Task[None] | None = None
        self._joined: asyncio.Future[None] | None = None
        self.received = 0

    async def join(self, member: Member) -> None:
        """Add ``member``; returns once pushes reach it (raises JoinFailed when they cannot)."""
        self.members.add(member)
        if self._task is None or self._task.done():
            self._joined = asyncio.get_running_loop().create_future()
            self._task = asyncio.ensure_future(self._run(self._joined))
        assert self._joined is not None
        try:
            await asyncio.shield(self._joined)
        except Exception as exc:
            self.members.discard(member)
            raise JoinFailed(str(exc)) from exc

    def leave(self, member: Member) -> None:
        self.members.discard(member)
        if not self.members and self._task is not None:
            self._task.cancel()  # the last one left: leave the group too
            self._task = None  # whoever joins next starts a new session
            self.summaries.close()

    async def _run(self, joined: asyncio.Future[None]) -> None:
        layer = self._layer()
        group, channel = self._group(), ""
        try:
            try:
                channel = await layer.new_channel()
                await layer.group_add(group, channel)
            except Exception as exc:
                _log.record("realtime.join_failed", "cannot join the push group", error=repr(exc))
                joined.set_exception(exc)
                return
            joined.set_result(None)
            renew = asyncio.ensure_future(self._renew(layer, group, channel))
            try:
                await self._relay(layer, channel)
            finally:
                renew.cancel()
        finally:
            if not joined.done():  # stopped while joining: whoever waits must not hang
                joined.set_exception(JoinFailed("the relay stopped while joining"))
            elif channel and joined.exception() is None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(layer.group_discard(group, channel))

    async def _relay(self, layer: Any, channel: str) -> None:
        while True:
            try:
                message = await layer.receive(channel)
            except Exception as exc:
                _log.record("realtime.relay_lost", "push group lost", error=repr(exc))
                if self._task is asyncio.current_task():
                    self._task = None  # whoever joins next starts a new session
                await self._lose_all()
                return
            if message.get("type") != PUSH_TYPE:
                continue
            self.received += 1
            items = message["items"]
            if any(item[0] in HINT_KINDS for item in items):
                self.summaries.changed()
                items = [item for item in items if item[0] not in HINT_KINDS]
            if items:
                await self._fan_out(items)

    async def _fan_out(self, items: list[list[Any]]) -> None:
        for member in list(self.members):
            try:
                await member.deliver(items)
            except Exception as exc:  # one broken socket must not starve the others
                logger.info(
                    "push not delivered",
                    extra={"event": "realtime.deliver_failed", "error": repr(exc)},
                )

    async def _lose_all(self) -> None:
        members, self.members = list(self.members), set()
        for member in members:
            with contextlib.suppress(Exception):
                await member.lost()

    async def _renew(self, layer: Any, group: str, channel: str) -> None:
        """Renew the group entry so a short group_expiry drops only dead processes."""
        while True:
            await asyncio.sleep(self._refresh if self._refresh is not None else MEMBERSHIP_REFRESH)
            try:
                await layer.group_add(group, channel)
            except Exception as exc:
                _log.record("realtime.renew_failed", "membership not renewed", error=repr(exc))


_relays: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Relay] = weakref.WeakKeyDictionary()


def relay() -> Relay:
    """This event loop's relay (daphne has one loop; each test has its own)."""
    loop = asyncio.get_running_loop()
    found = _relays.get(loop)
    if found is None:
        found = _relays[loop] = Relay()
    return found
