"""One local aiohttp server that speaks the five providers' APIs, for tests and benchmarks.

Paths: ``/webhook[/...]`` (any method), ``/slack/api/chat.postMessage``,
``/discord/webhooks/<id>/<token>``, ``/pushbullet/v2/pushes``,
``/ha/api/services/notify/<service>``. Every request is recorded (with its arrival time from
``time.perf_counter_ns()``, taken before the body is read). By default each path answers like
the real service would on success; ``respond(prefix, [...])`` scripts the next answers of the
paths under ``prefix`` (503 twice then 200, 429 with Retry-After, Slack ``ok: false``, a delay,
or a hold until an event is set).

    async with running_fake_providers() as fake:
        config = fake.config_for("slack")
        fake.respond("/slack", [FakeResponse(503), FakeResponse(503)])
        ...
        [request] = await fake.wait_for(1)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import AsyncIterator, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web
from multidict import CIMultiDictProxy

HOST = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class FakeResponse:
    status: int = 200
    json: Any = None
    body: str | bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    # Seconds to wait before answering (server side), and/or an event to wait for.
    delay: float = 0.0
    release: asyncio.Event | None = None


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: CIMultiDictProxy[str]
    body: bytes
    received_ns: int

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    @property
    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.body.decode(), keep_blank_values=True))


class FakeProviders:
    def __init__(self) -> None:
        self.url = ""
        self.requests: list[RecordedRequest] = []
        self._scripts: dict[str, deque[FakeResponse]] = {}
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._closing = asyncio.Event()

    def respond(self, path_prefix: str, responses: Iterable[FakeResponse]) -> None:
        """Answer the next requests under ``path_prefix`` with ``responses``, then as usual."""
        self._scripts.setdefault(path_prefix, deque()).extend(responses)

    def requests_to(self, path_prefix: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.startswith(path_prefix)]

    # The timeout is part of the call (not asyncio.timeout around it) so that a test that
    # forgets it still fails in seconds, with a message saying how many requests came.
    async def wait_for(self, count: int, timeout: float = 5.0) -> list[RecordedRequest]:  # noqa: ASYNC109
        """The recorded requests once there are at least ``count`` (woken per request)."""
        if len(self.requests) < count:
            arrived: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append((count, arrived))
            try:
                async with asyncio.timeout(timeout):
                    await arrived
            except TimeoutError:
                raise TimeoutError(
                    f"{len(self.requests)} of {count} requests arrived in {timeout} s"
                ) from None
            finally:
                self._waiters = [(n, f) for n, f in self._waiters if f is not arrived]
        return list(self.requests)

    def config_for(self, provider_type: str, **overrides: Any) -> dict[str, Any]:
        """A valid config of ``provider_type`` that points at this server."""
        configs: dict[str, dict[str, Any]] = {
            "webhook": {"url": f"{self.url}/webhook"},
            "slack": {
                "token": "xoxb-test",
                "channel": "#alarm",
                "base_url": f"{self.url}/slack/api",
            },
            "discord": {"url": f"{self.url}/discord/webhooks/123/discord-token"},
            "pushbullet": {"token": "o.test-token", "base_url": f"{self.url}/pushbullet"},
            "home_assistant": {
                "base_url": f"{self.url}/ha",
                "token": "ha-token",
                "service": "mobile_app_test",
            },
        }
        return {**configs[provider_type], **overrides}

    async def handle(self, request: web.Request) -> web.StreamResponse:
        received_ns = time.perf_counter_ns()
        body = await request.read()
        self._record(RecordedRequest(request.method, request.path, dict(request.query),
                                     request.headers, body, received_ns))  # fmt: skip
        scripted = self._next_scripted(request.path)
        if scripted is None:
            return default_answer(request, body)
        await self._pause(scripted)
        return _answer(scripted)

    def _record(self, recorded: RecordedRequest) -> None:
        self.requests.append(recorded)
        for count, arrived in self._waiters:
            if len(self.requests) >= count and not arrived.done():
                arrived.set_result(None)

    def _next_scripted(self, path: str) -> FakeResponse | None:
        prefixes = [p for p, queue in self._scripts.items() if queue and path.startswith(p)]
        if not prefixes:
            return None
        return self._scripts[max(prefixes, key=len)].popleft()

    async def _pause(self, scripted: FakeResponse) -> None:
        steps: list[Coroutine[Any, Any, Any]] = []
        if scripted.delay > 0:
            steps.append(asyncio.sleep(scripted.delay))
        if scripted.release is not None:
            steps.append(scripted.release.wait())
        if not steps:
            return
        # Both the delay and the release apply; closing the server ends any wait, so a held
        # request never blocks cleanup.
        paused = asyncio.ensure_future(asyncio.gather(*steps))
        closing = asyncio.ensure_future(self._closing.wait())
        try:
            await asyncio.wait([paused, closing], return_when=asyncio.FIRST_COMPLETED)
        finally:
            paused.cancel()
            closing.cancel()


def _answer(scripted: FakeResponse) -> web.Response:
    if scripted.json is not None:
        return web.json_response(scripted.json, status=scripted.status, headers=scripted.headers)
    body = scripted.body.encode() if isinstance(scripted.body, str) else scripted.body
    return web.Response(status=scripted.status, body=body, headers=scripted.headers)


def default_answer(request: web.Request, body: bytes) -> web.Response:
    """What each real service answers to a well-formed request (and to a missing credential)."""
    path, bearer = request.path, request.headers.get("Authorization", "").startswith("Bearer ")
    if path.startswith("/webhook"):
        return web.json_response({"received": True})
    if path == "/slack/api/chat.postMessage" and request.method == "POST":
        if not bearer:
            return web.json_response({"ok": False, "error": "not_authed"})
        channel = json.loads(body or b"{}").get("channel")
        return web.json_response({"ok": True, "channel": channel, "ts": "1700000000.000100"})
    if path.startswith("/discord/webhooks/") and path.count("/") == 4 and request.method == "POST":
        if request.query.get("wait") == "true":
            return web.json_response({"id": "1", "content": json.loads(body).get("content")})
        return web.Response(status=204)
    if path == "/pushbullet/v2/pushes" and request.method == "POST":
        if "Access-Token" not in request.headers:
            return web.json_response({"error": {"code": "invalid_access_token"}}, status=401)
        return web.json_response({"iden": "ujpah72o0", "active": True, **json.loads(body)})
    if path.startswith("/ha/api/services/notify/") and request.method == "POST":
        if not bearer:
            return web.json_response({"message": "Unauthorized"}, status=401)
        return web.json_response([])
    return web.json_response({"message": "not found"}, status=404)


@contextlib.asynccontextmanager
async def running_fake_providers(host: str = HOST) -> AsyncIterator[FakeProviders]:
    """The fake providers on ``host`` at an ephemeral port, for the duration of the block."""
    fake = FakeProviders()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    # No access log: benchmarks push thousands of requests per second through this.
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, host, 0)
    await site.start()
    port = runner.addresses[0][1]
    fake.url = f"http://{host if ':' not in host else f'[{host}]'}:{port}"
    try:
        yield fake
    finally:
        fake._closing.set()
        await runner.cleanup()
