"""A run in a ``runworker`` process reaches a WebSocket client of a real daphne; at idle
nothing is sent (the page no longer re-reads jobs and runs every minute)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest
from django.utils import timezone

from realtime import tokens
from services.models import ScheduledJob
from tests.acceptance.conftest import Spawn
from tests.integration.conftest import db_call, stores  # noqa: F401 - fixtures
from tests.realtime_support import (  # noqa: F401 - fixtures
    ORIGIN,
    Daphne,
    daphne_fixture,
    make_user,
    realtime_group_fixture,
)

pytestmark = [pytest.mark.acceptance, pytest.mark.django_db(transaction=True)]

TASK = "cleanup_expired_sessions"  # a real task, daily: "run now" is its only run here


def request_run() -> int:
    return ScheduledJob.objects.filter(name=TASK).update(run_requested_at=timezone.now())


def shown_runs(message: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {(r["task"], r["started_at"], r["source"]) for r in message["payload"]["runs"]}


async def next_runs(ws: aiohttp.ClientWebSocketResponse, within: float) -> dict[str, Any]:
    while True:
        message: dict[str, Any] = await ws.receive_json(timeout=within)
        if message["type"] == "task_runs":
            return message


async def test_a_run_in_the_worker_is_pushed_and_idle_sends_nothing(
    spawn: Spawn,
    worker_env: dict[str, str],
    daphne: Daphne,
    realtime_group: str,
    db_call: Any,  # noqa: F811 - the fixture imported above
) -> None:
    env = {**worker_env, "WORKER_TASK_MODULES": "", "REALTIME_GROUP": realtime_group}
    worker = spawn(env, "--only", "cron")
    token = await db_call(tokens.make_token, await db_call(make_user))
    await asyncio.to_thread(worker.wait_event, "cron.ready")
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"{daphne.ws}?token={token}", headers={"Origin": ORIGIN})
        snapshots = [(await ws.receive_json(timeout=10))["type"] for _ in range(2)]
        assert snapshots == ["alarm_state", "system_status"]

        requested = time.monotonic()
        assert await db_call(request_run) == 1  # NOTIFY: the worker runs it at once
        while True:
            message = await next_runs(ws, within=10)
            newest = message["payload"]["runs"][0]
            if (newest["task"], newest["status"]) == (TASK, "success"):
                break
        print(f"run requested -> success shown: {1000 * (time.monotonic() - requested):.0f} ms")
        assert newest["source"] == "manual"

        # Idle: the worker sleeps until 03:00. At most one late copy of what is shown (the
        # finish's hint read after the claim's had already seen it), then nothing; a run of
        # a scheduled slot that happened to fall in this window would be a real change.
        shown, late = shown_runs(message), []
        try:
            while True:
                late.append(await next_runs(ws, within=2.0))
        except TimeoutError:
            pass
        copies = [m for m in late if shown_runs(m) == shown]
        changes = [m for m in late if shown_runs(m) != shown]
        assert len(copies) <= 1, late
        assert all(source == "scheduled" for m in changes for _, _, source in shown_runs(m) - shown)
        await ws.close()
