"""A real daphne serving config.asgi, real WebSocket clients (aiohttp), real Redis.

The status changes are made in this process (a worker-like StatusHub on the test database)
and reach the clients of the daphne process through Redis.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from realtime import tokens
from realtime.hub import StatusHub
from services.clock import RealClock
from services.dbthread import AsyncStore
from tests.realtime_support import (  # noqa: F401 - fixtures
    ORIGIN,
    PASSWORD,
    Daphne,
    daphne_fixture,
    make_user,
    realtime_group_fixture,
    session_cookie,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
async def hub(stores: list[AsyncStore]) -> AsyncIterator[StatusHub]:
    store_ = AsyncStore()
    stores.append(store_)
    made = StatusHub(RealClock(), store_.call, worker_id="test-worker")
    stopping = asyncio.Event()
    task = asyncio.create_task(made.run(stopping))
    async with asyncio.timeout(10):
        await made.settled()
    yield made
    stopping.set()
    await task


async def next_json(ws: aiohttp.ClientWebSocketResponse, within: float = 10) -> dict[str, Any]:
    message = await ws.receive(within)
    assert message.type == aiohttp.WSMsgType.TEXT, message
    data: dict[str, Any] = message.json()
    return data


async def test_a_status_change_reaches_clients_through_daphne(
    daphne: Daphne, hub: StatusHub, db_call: Any
) -> None:
    user = await db_call(make_user)
    cookie = await db_call(session_cookie, user)
    token = await db_call(tokens.make_token, user)
    async with aiohttp.ClientSession() as http:
        by_cookie = await http.ws_connect(daphne.ws, headers={"Origin": ORIGIN, "Cookie": cookie})
        by_token = await http.ws_connect(f"{daphne.ws}?token={token}", headers={"Origin": ORIGIN})
        for ws in (by_cookie, by_token):
            alarm, status = await next_json(ws), await next_json(ws)
            assert alarm["type"] == "alarm_state"
            assert status["type"] == "system_status"
            assert status["payload"]["mqtt"]["state"] == "unconfigured"
        hub.report("mqtt", "connected", details={"broker": "127.0.0.1:1883"})
        for ws in (by_cookie, by_token):
            pushed = await next_json(ws)
            assert pushed["type"] == "system_status"
            assert pushed["payload"]["mqtt"]["connected"] is True
            assert pushed["sequence"] > status["sequence"]
        await by_cookie.send_json({"type": "ping"})
        assert await next_json(by_cookie) == {"type": "pong"}
        await by_cookie.close()
        await by_token.close()


async def test_daphne_refuses_strangers(daphne: Daphne) -> None:
    async with aiohttp.ClientSession() as http:
        anonymous = await http.ws_connect(daphne.ws, headers={"Origin": ORIGIN})
        closing = await anonymous.receive(10)
        assert closing.type == aiohttp.WSMsgType.CLOSE and closing.data == 4401
        expired = await http.ws_connect(f"{daphne.ws}?token=forged", headers={"Origin": ORIGIN})
        assert (await expired.receive(10)).data == 4401
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await http.ws_connect(daphne.ws, headers={"Origin": "http://evil.example"})


async def test_the_status_page_needs_a_login(daphne: Daphne, db_call: Any) -> None:
    user = await db_call(make_user)
    # unsafe: keep cookies for an IP address host (127.0.0.1)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.get(f"{daphne.http}/", allow_redirects=False) as response:
            assert response.status == 302
            assert response.headers["Location"].startswith("/accounts/login/")
        async with http.get(f"{daphne.http}/accounts/login/") as response:
            assert response.status == 200
            csrf = response.cookies["csrftoken"].value
        form = {"username": user.username, "password": PASSWORD, "csrfmiddlewaretoken": csrf}
        async with http.post(
            f"{daphne.http}/accounts/login/", data=form, headers={"Referer": daphne.http}
        ) as response:
            assert response.status == 200 and "Integrations" in await response.text()
        async with http.get(f"{daphne.http}/static/realtime/status.js") as response:
            assert response.status == 200 and "WebSocket" in await response.text()
        async with http.get(f"{daphne.http}/api/ws-token/") as response:
            body = await response.json()
        assert (await db_call(tokens.check_token, body["token"]))[1] == "ok"
        async with http.get(f"{daphne.http}/status/summary.json") as response:
            body = await response.json()
        assert body["type"] == "task_runs" and body["sequence"] > 0
        assert set(body["payload"]) == {"jobs", "runs"}
