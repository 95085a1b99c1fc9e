"""``/ws/alarm/``: snapshots on connect, then every push; ping -> pong. Thin on purpose.

Pushes reach the consumer through its process's relay (``realtime.relay``), not a channel of
its own. Order on connect: join the relay FIRST, then read the snapshots (``alarm_state``,
then ``system_status``) and send them. A push that arrives meanwhile is held until they are
sent, and then dropped if its number is not above the snapshot's of its kind: the snapshot
already showed it. So a client never misses a change nor sees an older state after a newer
one, for the snapshot kinds. ``entity_state`` pushes are forwarded as they come.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from realtime import snapshots
from realtime.relay import JoinFailed, relay

logger = logging.getLogger(__name__)

UNAUTHENTICATED = 4401
TRY_AGAIN = 1011
SNAPSHOT_KINDS = ("alarm_state", "system_status")
# Messages whose handlers touch no database (see dispatch).
_NO_DATABASE = frozenset({"websocket.receive"})


class AlarmConsumer(AsyncWebsocketConsumer):
    # No channel of its own on the channel layer: the relay brings the pushes.
    channel_layer_alias = "no-channel-layer"
    _joined = False

    async def connect(self) -> None:
        await self.accept()  # a close code reaches the client only on an accepted socket
        user = self.scope.get("user")
        if user is None or not user.is_authenticated or not user.is_active:
            await self.close(code=UNAUTHENTICATED)
            return
        self.latest: dict[str, int] = {}
        self._held: list[list[Any]] | None = []  # pushes that came before the snapshots
        try:
            await relay().join(self)
        except JoinFailed:  # Redis away: the client retries and gets snapshots then
            await self.close(code=TRY_AGAIN)
            return
        self._joined = True
        for build in (snapshots.alarm_state_message, snapshots.system_status_message):
            snapshot = await database_sync_to_async(build)()
            self.latest[snapshot["type"]] = snapshot["sequence"]
            await self.send(text_data=json.dumps(snapshot, default=str))
        held, self._held = self._held or [], None
        await self.deliver(held)

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Skip channels' close_old_connections() for client frames (pings).

        channels runs it before every handler, through the one thread every consumer of the
        process shares; a ping never touches the database.
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

    async def deliver(self, items: list[list[Any]]) -> None:
        """Send pushes (``[kind, sequence, text]``) the client has not seen yet (the relay)."""
        if self._held is not None:
            self._held.extend(items)
            return
        for kind, number, text in items:
            if kind in SNAPSHOT_KINDS:
                if number <= self.latest.get(kind, 0):
                    continue  # the snapshot (or a later push) already showed it
                self.latest[kind] = number
            await self.base_send({"type": "websocket.send", "text": text})

    async def lost(self) -> None:
        """The relay lost Redis: close, so that the client reconnects for fresh snapshots."""
        await self.close(code=TRY_AGAIN)

    async def disconnect(self, code: int) -> None:
        if self._joined:
            relay().leave(self)
