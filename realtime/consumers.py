"""``/ws/alarm/``: snapshots on connect, then every push; ping -> pong. Thin on purpose.

Order on connect: join the group FIRST, then read the snapshots (``alarm_state``, then
``system_status``) and send them. A push committed meanwhile waits in the channel layer
(channels dispatches one message at a time, so none is handled before ``connect`` returns)
and is then dropped if its number is not above the snapshot's: the snapshot already showed
it. So a client never misses a change nor sees an older one after a newer one, for the
snapshot kinds. ``entity_state`` pushes are forwarded as they come.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from realtime import broadcast, snapshots
from realtime.logs import BoundedLog

logger = logging.getLogger(__name__)
_log = BoundedLog(logger)

UNAUTHENTICATED = 4401
SNAPSHOT_KINDS = ("alarm_state", "system_status")
# Messages whose handlers touch no database (see dispatch).
_NO_DATABASE = frozenset({"realtime.push", "websocket.receive"})


class AlarmConsumer(AsyncWebsocketConsumer):
    group: str | None = None
    _refresh: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        await self.accept()  # a close code reaches the client only on an accepted socket
        user = self.scope.get("user")
        if user is None or not user.is_authenticated or not user.is_active:
            await self.close(code=UNAUTHENTICATED)
            return
        self.latest: dict[str, int] = {}
        try:
            group = broadcast.group_name()
            await self.channel_layer.group_add(group, self.channel_name)
            self.group = group
        except Exception as exc:  # Redis away: the client retries and gets snapshots then
            _log.warning("realtime.join_failed", "cannot join the push group", error=repr(exc))
            await self.close(code=1011)
            return
        self._refresh = asyncio.ensure_future(self._refresh_membership())
        for build in (snapshots.alarm_state_message, snapshots.system_status_message):
            snapshot = await database_sync_to_async(build)()
            self.latest[snapshot["type"]] = snapshot["sequence"]
            await self.send(text_data=json.dumps(snapshot, default=str))

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Skip channels' close_old_connections() for pushes and pings.

        channels runs it before every handler, through the one thread shared by every
        consumer of the process: a push to 50 clients queued 50 thread hops, most of the
        fan-out's time. These handlers never touch the database; connect's snapshot reads
        go through database_sync_to_async, which closes old connections itself.
        """
        if message["type"] in _NO_DATABASE:
            await getattr(self, get_handler_name(message))(message)
            return
        await super().dispatch(message)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            kind = json.loads(text_data or "").get("type")
        except (ValueError, AttributeError):
            kind = None
        if kind == "ping":
            await self.send(text_data='{"type": "pong"}')

    async def realtime_push(self, event: dict[str, Any]) -> None:
        for kind, number, text in event["items"]:
            if kind in SNAPSHOT_KINDS:
                if number <= self.latest.get(kind, 0):
                    continue  # the snapshot (or a later push) already showed it
                self.latest[kind] = number
            await self.send(text_data=text)

    async def disconnect(self, code: int) -> None:
        if self._refresh is not None:
            self._refresh.cancel()
        if self.group is not None:
            with contextlib.suppress(Exception):
                await self.channel_layer.group_discard(self.group, self.channel_name)

    async def _refresh_membership(self) -> None:
        """Renew the group entry so a short group_expiry drops only dead consumers."""
        while True:
            await asyncio.sleep(broadcast.MEMBERSHIP_REFRESH)
            try:
                await self.channel_layer.group_add(self.group, self.channel_name)
            except Exception as exc:
                _log.warning(
                    "realtime.renew_failed", "group membership not renewed", error=repr(exc)
                )
