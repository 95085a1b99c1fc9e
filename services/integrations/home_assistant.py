"""The Home Assistant integration: one WebSocket to ``/api/websocket``, as a worker component.

    client = HomeAssistantClient(settings, clock=clock, report=report, on_state=on_state)
    await client.run(stopping)

On every (re)connect: authenticate, subscribe to ``state_changed``, fetch every state with
``get_states`` and hand the ones that differ from what this client last delivered to
``on_state``; from then on each ``state_changed`` event. The status hub hears
``connecting`` (at start), ``connected`` (in sync, with the Home Assistant version),
``disconnected`` (with the reason) and ``auth_failed``.

The heartbeat is the protocol's own ``{"type": "ping"}``, not aiohttp's ``heartbeat=``: a
pong proves Home Assistant's event loop answers (a WebSocket PONG proves only its HTTP
layer), and the waits run on the injected clock. Home Assistant's own WebSocket pings (every
55 s) are answered by aiohttp.

``auth_invalid`` is not retried by default (``auth_retry_interval=None``): a refused token is
refused again, and Home Assistant may ban an address after repeated failed logins
(``ip_ban_enabled``). The status shows the error until the configuration changes, which
restarts this client. Home Assistant's own front-end library makes the same choice.
"""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from services.integrations import ha_protocol as proto
from services.integrations.config_spec import EffectiveConfig
from services.integrations.ha_protocol import EntityFilter, HaSession
from services.integrations.ws_client import AuthFailed, WebSocketClient
from services.integrations.ws_support import EntityState

WEBSOCKET_PATH = "/api/websocket"


@dataclass(frozen=True)
class HomeAssistantSettings:
    """Everything the client needs; built by the integrations app from its config row."""

    base_url: str  # http(s)://host:8123; ws(s)://, or a URL ending in /api/websocket, also do
    token: str = field(repr=False)  # a long-lived access token; never logged or shown
    heartbeat_interval: float = 30.0
    pong_timeout: float = 10.0
    connect_timeout: float = 10.0  # TCP + TLS + upgrade + auth_ok, together
    close_timeout: float = 2.0
    request_timeout: float = 30.0  # GET /api/states of the periodic sync
    backoff_base: float = 1.0
    backoff_cap: float = 60.0
    auth_retry_interval: float | None = None  # None: wait for a configuration change
    include: tuple[str, ...] = ()  # entity_id globs ("binary_sensor.*"); empty = every entity
    exclude: tuple[str, ...] = ()
    max_frame_bytes: int = 16 * 2**20  # get_states of a large install is a few MB
    verify_tls: bool = True

    def __post_init__(self) -> None:
        url = urllib.parse.urlsplit(self.base_url)
        if url.scheme not in ("http", "https", "ws", "wss") or not url.hostname:
            raise ValueError(f"base_url must be an http(s) or ws(s) URL: {self.base_url!r}")
        if not self.token:
            raise ValueError("token is required (a long-lived access token)")
        for name in ("heartbeat_interval", "pong_timeout", "connect_timeout", "close_timeout",
                     "request_timeout", "backoff_base", "backoff_cap"):  # fmt: skip
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if self.auth_retry_interval is not None and not self.auth_retry_interval > 0:
            raise ValueError("auth_retry_interval must be > 0 or None")
        if self.max_frame_bytes < 1024:
            raise ValueError("max_frame_bytes must be >= 1024")

    @property
    def http_url(self) -> str:
        """The base as http(s)://host[:port][/prefix], without /api/websocket."""
        url = urllib.parse.urlsplit(self.base_url)
        scheme = {"ws": "http", "wss": "https"}.get(url.scheme, url.scheme)
        path = url.path.rstrip("/").removesuffix(WEBSOCKET_PATH)
        return urllib.parse.urlunsplit((scheme, url.netloc, path, "", ""))

    @property
    def websocket_url(self) -> str:
        scheme, rest = self.http_url.split("://", 1)
        return f"{'wss' if scheme == 'https' else 'ws'}://{rest}{WEBSOCKET_PATH}"

    def rest_url(self, path: str) -> str:
        return f"{self.http_url}{path}"

    @property
    def entity_filter(self) -> EntityFilter:
        return EntityFilter(self.include, self.exclude)

    @property
    def display_url(self) -> str:
        """For status details and logs: no user info, no query."""
        url = urllib.parse.urlsplit(self.http_url)
        host = url.hostname or ""
        netloc = f"[{host}]" if ":" in host else host
        netloc += f":{url.port}" if url.port else ""
        return urllib.parse.urlunsplit((url.scheme, netloc, url.path, "", ""))


def settings_from(config: EffectiveConfig) -> HomeAssistantSettings:
    """The client's settings from an effective configuration (the dataclass validates)."""
    values = config.values
    retry = float(values.get("auth_retry_interval") or 0)
    return HomeAssistantSettings(
        base_url=str(values.get("url") or ""),
        token=str(values.get("token") or ""),
        verify_tls=bool(values.get("verify_tls", True)),
        include=tuple(values.get("include") or ()),
        exclude=tuple(values.get("exclude") or ()),
        heartbeat_interval=float(values.get("heartbeat_interval") or 30.0),
        auth_retry_interval=retry if retry > 0 else None,
    )


class HomeAssistantClient(WebSocketClient[HomeAssistantSettings]):
    integration = "home_assistant"

    def _init_client(self) -> None:
        self._filter = self.settings.entity_filter
        self._session_proto = HaSession(self.settings.token)
        self.version: str | None = None
        self.counters.update(events=0, filtered=0, removed=0)

    def _health_details(self) -> dict[str, Any]:
        return {"url": self.settings.display_url, "version": self.version}

    def _begin_connection(self) -> None:
        self._session_proto = HaSession(self.settings.token)

    async def _send_ping(self) -> None:
        await self._send(json.dumps(self._session_proto.ping().payload))

    async def _on_text(self, text: str) -> None:
        for message in proto.decode_frame(text):
            try:
                outputs = self._session_proto.receive(message)
            except proto.Malformed as exc:
                self._malformed(exc.reason, exc.detail)
                continue
            for output in outputs:
                await self._apply(output)

    async def _apply(self, output: proto.Output) -> None:
        match output:
            case proto.Send(payload):
                await self._send(json.dumps(payload))
            case proto.Authenticated(version):
                self.version = version
                self._mark_ready()
            case proto.AuthRejected(message):
                raise AuthFailed(message)
            case proto.Snapshot(states, rejected):
                for bad in rejected:
                    self._malformed(bad.reason, bad.detail)
                for state in states:
                    await self._take(state)
                self._mark_live(
                    {"version": self.version, "url": self.settings.display_url,
                     "entities": len(self.delivered)}
                )  # fmt: skip
            case proto.StateUpdate(change):
                self.counters["events"] += 1
                if change.new_state is None:
                    self.counters["removed"] += 1  # removed in HA: its last state stays here
                else:
                    await self._take(change.new_state)
            case proto.PongReceived():
                self._pong_received()
            case proto.Ignored(reason, detail):
                self._malformed(reason, detail)

    async def _take(self, state: EntityState) -> None:
        if not self._filter(state.entity_id):
            self.counters["filtered"] += 1
            return
        await self._deliver(state)
