"""Jobs and runs pushed to ``/ws/alarm/`` clients: a committed run's outcome -> the signal ->
a hint through the real Redis -> one summary read by the process's relay -> every socket."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator

from config.asgi import application
from realtime import broadcast
from realtime.relay import relay
from services import store
from services.models import ScheduledJob, TaskRun
from tests.realtime_support import (  # noqa: F401 - fixtures
    AlarmSource,
    alarm_source_fixture,
    make_user,
    realtime_group_fixture,
    session_cookie,
    ws_headers,
)

pytestmark = pytest.mark.django_db(transaction=True)

NOW = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)


def running_run() -> int:
    job = ScheduledJob.objects.create(name="t_pushed", schedule="every minute")
    run = TaskRun.objects.create(
        job=job, source="manual", worker_id="w1", status="running", started_at=NOW
    )
    return run.pk


async def client(cookie: str) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(application, "/ws/alarm/", headers=ws_headers(cookie))
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    kinds = [(await communicator.receive_json_from(5))["type"] for _ in range(2)]
    assert kinds == ["alarm_state", "system_status"]  # the relay has joined
    return communicator


async def until_run_shows(communicator: WebsocketCommunicator, status: str) -> dict[str, Any]:
    while True:
        message: dict[str, Any] = await communicator.receive_json_from(10)
        assert message["type"] == "task_runs"
        runs = message["payload"]["runs"]
        if runs and runs[0]["status"] == status:
            return message


async def test_a_finished_run_reaches_every_socket_with_one_read_per_burst(
    realtime_group: str, alarm_source: AlarmSource, db_call: Any
) -> None:
    cookie = await db_call(session_cookie, await db_call(make_user))
    sockets = [await client(cookie), await client(cookie)]
    feed = relay().summaries  # this process's: both sockets are its members
    hints, reads = feed.hints, feed.reads
    try:
        run_id = await db_call(running_run)
        await db_call(store.finish_run, run_id, status="success", now=NOW, attempt=1, result=1)
        for socket in sockets:
            message = await until_run_shows(socket, "success")
            [shown] = message["payload"]["runs"]
            assert shown["task"] == "t_pushed" and shown["source"] == "manual"
            assert message["payload"]["jobs"][0]["name"] == "t_pushed"
        await feed.idle()
        # One commit that announced (creating a row by hand does not), one read for both.
        assert (feed.hints - hints, feed.reads - reads) == (1, 1)
        assert broadcast.flush(5)
        for socket in sockets:
            assert await socket.receive_nothing(0.3)  # nothing more: no poll, no re-read
        assert feed.reads - reads == 1
    finally:
        for socket in sockets:
            await socket.disconnect()
