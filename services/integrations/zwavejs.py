"""The Z-Wave JS integration: one WebSocket to zwave-js-server, as a worker component.

    client = ZwaveJsClient(settings, clock=clock, report=report, on_state=on_state)
    await client.run(stopping)

On every (re)connect: read the server's ``version``, ``set_api_schema``, ``start_listening``;
its result (the driver's state) is reported ``connected`` with the driver and server
versions, the home id, the schema and the node count, and each value of the chosen command
classes becomes an entity (``zwavejs_protocol`` documents the ids). Then ``value updated``
events feed ``on_state``; nodes added or removed update the status details.

zwave-js-server has no ping command, so the heartbeat is WebSocket PING frames, sent and
timed on the injected clock (this client answers the server's own PINGs itself, since
aiohttp's autoping would hide the PONGs the heartbeat waits for). zwave-js-server has no
authentication: nothing here is secret, and no ``auth_failed`` is reported.
"""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass
from typing import Any

from services.integrations import zwavejs_protocol as zw
from services.integrations.config_spec import EffectiveConfig
from services.integrations.ws_client import WebSocketClient
from services.integrations.ws_support import Malformed


@dataclass(frozen=True)
class ZwaveJsSettings:
    url: str  # ws://host:3000 (wss:// behind a TLS proxy)
    heartbeat_interval: float = 30.0
    pong_timeout: float = 10.0
    connect_timeout: float = 10.0  # TCP + upgrade + the version message, together
    close_timeout: float = 2.0
    backoff_base: float = 1.0
    backoff_cap: float = 60.0
    schema_version: int = zw.SCHEMA_VERSION
    # Values of these command classes become entities; None: every value; (): none.
    command_classes: tuple[int, ...] | None = zw.DEFAULT_COMMAND_CLASSES
    max_frame_bytes: int = 32 * 2**20  # the state dump of a large network
    verify_tls: bool = True

    def __post_init__(self) -> None:
        url = urllib.parse.urlsplit(self.url)
        if url.scheme not in ("ws", "wss") or not url.hostname:
            raise ValueError(f"url must be a ws:// or wss:// URL: {self.url!r}")
        for name in ("heartbeat_interval", "pong_timeout", "connect_timeout", "close_timeout",
                     "backoff_base", "backoff_cap"):  # fmt: skip
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if self.schema_version < 0:
            raise ValueError("schema_version must be >= 0")
        if self.max_frame_bytes < 1024:
            raise ValueError("max_frame_bytes must be >= 1024")

    @property
    def websocket_url(self) -> str:
        return self.url

    @property
    def display_url(self) -> str:
        url = urllib.parse.urlsplit(self.url)
        host = url.hostname or ""
        netloc = (f"[{host}]" if ":" in host else host) + (f":{url.port}" if url.port else "")
        return urllib.parse.urlunsplit((url.scheme, netloc, url.path, "", ""))


def settings_from(config: EffectiveConfig) -> ZwaveJsSettings:
    """The client's settings from an effective configuration (the dataclass validates)."""
    values = config.values
    return ZwaveJsSettings(
        url=str(values.get("url") or ""),
        verify_tls=bool(values.get("verify_tls", True)),
        heartbeat_interval=float(values.get("heartbeat_interval") or 30.0),
    )


class ZwaveJsClient(WebSocketClient[ZwaveJsSettings]):
    integration = "zwavejs"
    autoping = False

    def _init_client(self) -> None:
        self._proto = self._new_session()
        self.details: dict[str, Any] = {}
        self.counters.update(value_events=0)

    def _new_session(self) -> zw.ZwaveSession:
        classes = self.settings.command_classes
        return zw.ZwaveSession(
            wanted_schema=self.settings.schema_version,
            command_classes=None if classes is None else frozenset(classes),
        )

    def _health_details(self) -> dict[str, Any]:
        return {"url": self.settings.display_url, **self.details}

    def _begin_connection(self) -> None:
        self._proto = self._new_session()

    async def _send_ping(self) -> None:
        if self._ws is not None:
            await self._ws.ping()

    async def _on_text(self, text: str) -> None:
        try:
            body = json.loads(text)
        except ValueError as exc:
            raise Malformed("bad_json", str(exc)) from None
        for output in self._proto.receive(body):
            await self._apply(output)

    async def _apply(self, output: zw.Output) -> None:
        match output:
            case zw.Send(payload):
                await self._send(json.dumps(payload))
            case zw.VersionReceived():
                self._mark_ready()
            case zw.Listening(details, entities, rejected):
                for bad in rejected:
                    self._malformed(bad.reason, bad.detail)
                for entity in entities:
                    await self._deliver(entity)
                self.details = details
                self._mark_live({**details, "url": self.settings.display_url})
            case zw.ValueUpdate(entity):
                self.counters["value_events"] += 1
                await self._deliver(entity)
            case zw.NodesChanged(details):
                self.details = details
                self._status("connected", details={**details, "url": self.settings.display_url})
            case zw.Ignored(reason, detail):
                self._malformed(reason, detail)
