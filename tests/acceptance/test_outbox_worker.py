"""The notification outbox in ``manage.py runworker`` as a real process, against real PostgreSQL.

The fake providers' server (tests.fakes) runs in a thread of this process; deliveries are
inserted with the ORM or plain SQL and committed, so only the database trigger's NOTIFY (or the
worker's catch-up drain) can bring them to the worker.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import urllib.error
from collections import Counter
from typing import Any

import pytest
from django.db import connection

from notifications.models import NotificationDelivery, NotificationLog, NotificationProvider
from tests.acceptance.conftest import (
    BASE_DIR,
    Spawn,
    ThreadedFakeProviders,
    Worker,
    free_port,
    wait_total,
)
from tests.acceptance.private_pg import PrivatePostgres
from tests.fakes.provider_servers import FakeResponse, RecordedRequest

pytestmark = [pytest.mark.acceptance, pytest.mark.django_db(transaction=True)]

OUTBOX_ONLY = ("--only", "outbox")  # the listener always runs; cron stays out of the way

INSERT_PROVIDER = """
INSERT INTO notifications_notificationprovider (name, type, enabled, config, created_at, updated_at)
VALUES (%(name)s, 'webhook', true, %(config)s::jsonb, now(), now())
RETURNING id
"""

# Plain SQL, as another service would write: every column the ORM would fill, due now.
INSERT_DELIVERIES = """
INSERT INTO notifications_notificationdelivery
    (provider_id, title, message, data, status, attempts, max_attempts, next_attempt_at,
     locked_by, last_error_code, last_error_message, idempotency_key, created_at, updated_at)
SELECT %(provider)s, 'sql ' || n, 'message ' || n, '{}'::jsonb, 'pending', 0, 5, now(),
       '', '', '', gen_random_uuid()::text, now(), now()
FROM generate_series(1, %(count)s) AS n
RETURNING idempotency_key
"""


def outbox_env(worker_env: dict[str, str], **extra: str) -> dict[str, str]:
    """The worker's environment with loopback allowed (the sink is local); /healthz on a port
    of the system's choosing unless ``WORKER_HEALTH_PORT`` is given (to query it)."""
    return {**worker_env, "OUTBOX_ALLOW_LOOPBACK": "true", "WORKER_HEALTH_PORT": "0", **extra}


def health_body(worker: Worker) -> dict[str, Any]:
    """/healthz's body, also when it answers 503."""
    try:
        return worker.healthz()
    except urllib.error.HTTPError as exc:
        body: dict[str, Any] = json.loads(exc.read())
        return body


def exit_code(worker: Worker, timeout: float = 45.0) -> int:
    """The worker's exit code; an AssertionError with its log if it does not exit in time."""
    try:
        return worker.wait_exit(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"no exit within {timeout}s; log:\n{worker.log()}") from None


def make_provider(fake: ThreadedFakeProviders) -> int:
    return NotificationProvider.objects.create(
        name="sink", type="webhook", config=fake.config_for("webhook")
    ).pk


def enqueue_orm(provider: int, count: int) -> set[str]:
    rows = NotificationDelivery.objects.bulk_create(
        NotificationDelivery(provider_id=provider, title=f"t{n}", message=f"m{n}")
        for n in range(count)
    )
    return {row.idempotency_key for row in rows}


def enqueue_sql(provider: int, count: int) -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute(INSERT_DELIVERIES, {"provider": provider, "count": count})
        return {key for (key,) in cursor.fetchall()}


def statuses() -> Counter[str]:
    return Counter(NotificationDelivery.objects.values_list("status", flat=True))


def keys_of(requests: list[RecordedRequest]) -> Counter[str]:
    """How often each Idempotency-Key reached the sink."""
    return Counter(request.headers["Idempotency-Key"] for request in requests)


def test_deliveries_enqueued_while_running_are_sent_once(
    spawn: Spawn, worker_env: dict[str, str], fake_providers: ThreadedFakeProviders
) -> None:
    port = str(free_port())
    worker = spawn(outbox_env(worker_env, WORKER_HEALTH_PORT=port))  # cron, listener, outbox
    worker.wait_event("listener.connected")
    provider = make_provider(fake_providers)

    by_orm = enqueue_orm(provider, 20)
    fake_providers.wait_for(20)
    worker.wait_count("outbox.sent", 20)
    health = worker.healthz()
    listener, outbox = health["components"]["listener"], health["components"]["outbox"]
    assert health["status"] == "ok"
    assert listener["state"] == "listening" and "notifications_outbox" in listener["channels"]
    assert (outbox["state"], outbox["sent"]) == ("running", 20)
    assert (outbox["sends_in_flight"], outbox["results_pending"]) == (0, 0)

    # LISTEN is in place and the worker idle: the trigger's NOTIFY must wake it for these.
    by_sql = enqueue_sql(provider, 20)
    fake_providers.wait_for(40)
    worker.wait_count("outbox.sent", 40)
    worker.signal(signal.SIGTERM)
    assert exit_code(worker) == 0

    assert keys_of(fake_providers.requests()) == Counter(by_orm | by_sql)  # each exactly once
    assert len(by_orm | by_sql) == 40
    assert statuses() == {"sent": 40}
    assert worker.count("outbox.retry") == worker.count("outbox.dead") == 0


def test_kill_9_mid_drain_then_restart_repeats_only_rows_leased_in_flight(
    spawn: Spawn, worker_env: dict[str, str], fake_providers: ThreadedFakeProviders
) -> None:
    total, answered, held_count = 100, 30, 10
    env = {"OUTBOX_CONCURRENCY": str(held_count), "OUTBOX_LEASE": "2"}
    held = asyncio.Event()
    fake_providers.respond(
        "/webhook",
        [FakeResponse(json={"received": True})] * answered
        + [FakeResponse(release=held)] * held_count,
    )
    first = spawn(outbox_env(worker_env, **env), *OUTBOX_ONLY)
    first.wait_event("listener.connected")
    keys = enqueue_orm(make_provider(fake_providers), total)

    # Every send slot is now held at the sink: nothing more is claimed until an answer comes.
    arrived = fake_providers.wait_for(answered + held_count)
    leased = set(
        NotificationDelivery.objects.filter(status="sending").values_list(
            "idempotency_key", flat=True
        )
    )
    first.kill()  # SIGKILL
    fake_providers.release(held)  # their answers go to a dead process
    assert len(arrived) == answered + held_count
    held_keys = set(keys_of(arrived[answered:]))
    left_sending = set(
        NotificationDelivery.objects.filter(status="sending").values_list(
            "idempotency_key", flat=True
        )
    )
    assert len(held_keys) == held_count and held_keys <= left_sending <= leased
    sent_by_first = NotificationDelivery.objects.filter(status="sent").count()

    second = spawn(outbox_env(worker_env, **env), *OUTBOX_ONLY)
    second.wait_count("outbox.sent", total - sent_by_first)  # the leased ones after 2 s
    second.signal(signal.SIGTERM)
    assert exit_code(second) == 0

    at_sink = keys_of(fake_providers.requests())
    repeated = {key for key, times in at_sink.items() if times > 1}
    assert set(at_sink) == keys and max(at_sink.values()) == 2
    assert held_keys <= repeated <= leased
    assert statuses() == {"sent": total}
    attempts = dict(NotificationDelivery.objects.values_list("idempotency_key", "attempts"))
    # A reclaim counts the lost attempt: for a row sent before the kill, exactly; a row the
    # first worker had claimed ahead but not yet sent counts one attempt that never happened
    # (the reclaimer cannot tell the two apart).
    claimed_ahead = leased - set(keys_of(arrived))
    assert {k: n for k, n in attempts.items() if k not in claimed_ahead} == {
        k: n for k, n in at_sink.items() if k not in claimed_ahead
    }
    assert all(attempts[k] - at_sink[k] in (0, 1) for k in claimed_ahead)


def _sigterm_with_held_sends(
    spawn: Spawn, worker_env: dict[str, str], fake: ThreadedFakeProviders, count: int
) -> Worker:
    """A worker stopped by SIGTERM while ``count`` answers are held past its 0.5 s grace."""
    held = asyncio.Event()
    fake.respond("/webhook", [FakeResponse(release=held)] * count)
    worker = spawn(outbox_env(worker_env, WORKER_SHUTDOWN_GRACE="0.5"), *OUTBOX_ONLY)
    worker.wait_event("listener.connected")
    enqueue_orm(make_provider(fake), count)
    fake.wait_for(count)
    worker.signal(signal.SIGTERM)
    try:
        assert exit_code(worker, timeout=20) == 0
    finally:
        fake.release(held)  # only now: the answers go to a process that is gone
    return worker


def test_sigterm_with_sends_in_flight_hands_them_back(
    spawn: Spawn, worker_env: dict[str, str], fake_providers: ThreadedFakeProviders
) -> None:
    worker = _sigterm_with_held_sends(spawn, worker_env, fake_providers, 5)
    assert worker.count("runner.cancelling") == 1  # the grace ran out with the sends in flight
    rows = list(
        NotificationDelivery.objects.values_list(
            "status", "last_error_code", "attempts", "locked_by"
        )
    )
    assert rows == [("pending", "shutdown", 1, "")] * 5
    assert list(NotificationLog.objects.values_list("error_code", flat=True)) == ["shutdown"] * 5


def test_results_written_at_shutdown_are_logged(
    spawn: Spawn, worker_env: dict[str, str], fake_providers: ThreadedFakeProviders
) -> None:
    worker = _sigterm_with_held_sends(spawn, worker_env, fake_providers, 5)
    assert NotificationLog.objects.filter(error_code="shutdown").count() == 5
    assert worker.count("outbox.retry") == 5  # one event per recorded result


def _insert(server: PrivatePostgres, provider: int, count: int) -> set[str]:
    with server.connect() as conn:
        rows = conn.execute(INSERT_DELIVERIES, {"provider": provider, "count": count}).fetchall()
    return {key for (key,) in rows}


def _private_statuses(server: PrivatePostgres) -> Counter[str]:
    with server.connect() as conn:
        rows = conn.execute("SELECT status FROM notifications_notificationdelivery").fetchall()
    return Counter(status for (status,) in rows)


def test_postgresql_restart_loses_no_delivery(
    spawn: Spawn,
    worker_env: dict[str, str],
    fake_providers: ThreadedFakeProviders,
    private_postgres: PrivatePostgres,
) -> None:
    server = private_postgres
    with server.connect() as conn:
        config = json.dumps(fake_providers.config_for("webhook"))
        [(provider,)] = conn.execute(INSERT_PROVIDER, {"name": "sink", "config": config}).fetchall()
    env = outbox_env(worker_env, DATABASE_URL=server.url, WORKER_HEALTH_PORT=str(free_port()))
    worker = spawn(env)  # the whole worker
    worker.wait_event("listener.connected")
    before = _insert(server, provider, 10)
    fake_providers.wait_for(10)
    worker.wait_count("outbox.sent", 10)

    server.restart()  # fast: every connection of the worker is closed
    during = _insert(server, provider, 10)  # committed before the worker is back (or while)
    worker.wait_count("listener.connected", 2, timeout=30)
    after = _insert(server, provider, 10)
    worker.wait_count("outbox.sent", 30, timeout=30)

    # The components' own view; the overall status may still say db_unreachable until the
    # cron component's next use of its ORM connection finds the database back.
    components = health_body(worker)["components"]
    assert components["listener"]["state"] == "listening"
    assert components["listener"]["reconnects"] >= 1
    assert components["outbox"]["state"] == "running"
    assert components["outbox"]["connection"] == "open"
    assert components["outbox"]["reconnects"] >= 1
    worker.signal(signal.SIGTERM)
    assert exit_code(worker) == 0

    assert worker.count("listener.disconnected") >= 1  # the loss was noticed, then recovered
    # The outbox reopened its own connections itself: no crash, no restart by the runner
    # (the cron component, which this test does not care about, may crash and be restarted).
    assert worker.count("outbox.disconnected") >= 1
    assert worker.count("outbox.reconnected") >= 1
    crashes = [line for line in worker.log().splitlines() if "runner.component_crashed" in line]
    assert not [line for line in crashes if "component='outbox'" in line], crashes
    assert keys_of(fake_providers.requests()) == Counter(before | during | after)
    assert _private_statuses(server) == {"sent": 30}


def test_two_workers_send_each_delivery_once(
    spawn: Spawn, worker_env: dict[str, str], fake_providers: ThreadedFakeProviders
) -> None:
    total, concurrency = 500, 50
    # The first answers are held until every request has come, as many as one worker's send
    # slots: whoever got them, the other worker must have sent the rest meanwhile.
    held = asyncio.Event()
    fake_providers.respond("/webhook", [FakeResponse(release=held)] * concurrency)
    env = {"OUTBOX_CONCURRENCY": str(concurrency)}
    workers = [spawn(outbox_env(worker_env, **env), *OUTBOX_ONLY) for _ in range(2)]
    for worker in workers:
        worker.wait_event("listener.connected")
    keys = enqueue_orm(make_provider(fake_providers), total)

    fake_providers.wait_for(total, timeout=30)
    fake_providers.release(held)
    # Stopped only once every result is recorded (shutdown mid-send is tested below).
    per_worker = wait_total(workers, "outbox.sent", total)
    for worker in workers:
        worker.signal(signal.SIGTERM)
    assert [exit_code(worker) for worker in workers] == [0, 0]

    assert keys_of(fake_providers.requests()) == Counter(keys)
    assert statuses() == {"sent": total}
    assert sum(per_worker) == total and min(per_worker) > 0, per_worker  # both took part
    logs = list(NotificationLog.objects.values_list("delivery_id", "outcome", "worker_id"))
    assert len({delivery for delivery, _, _ in logs}) == len(logs) == total
    assert {outcome for _, outcome, _ in logs} == {"sent"}
    assert len({worker_id for _, _, worker_id in logs}) == 2


# Drives OutboxComponent._finish_sends (stage 1 of the worker's shutdown) in the state the
# two-worker test above hit about once in ten runs when SIGTERM came as the held answers were
# released: every send in ``_sends`` has just finished, and their done-callbacks (which remove
# them from ``_sends``) are queued but have not run. A subprocess, so a spin cannot hang pytest.
SPIN_SCRIPT = """
import asyncio, django
django.setup()
from notifications.dispatcher import OutboxComponent, OutboxSettings
from notifications.outbox_sql import ClaimedDelivery
from services.clock import RealClock

async def main():
    outbox = OutboxComponent(RealClock(), "w", lambda *a, **k: lambda: None, OutboxSettings())
    outbox._start_send(ClaimedDelivery(1, "", "m", {}, 1, 5, "k", None, None, None, None, None))
    await asyncio.sleep(0)  # the send ends at once (no HTTP session); its callback is queued
    await outbox._finish_sends()

asyncio.run(main())
print("finished")
"""


def test_shutdown_as_the_last_sends_finish_does_not_spin() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    try:
        done = subprocess.run(
            [sys.executable, "-c", SPIN_SCRIPT],
            cwd=BASE_DIR,
            env={**env, "DJANGO_SETTINGS_MODULE": "config.settings"},
            capture_output=True,
            text=True,
            timeout=6,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("_finish_sends did not return within 6 s (spinning)")
    assert done.stdout.strip() == "finished", done.stdout + done.stderr
