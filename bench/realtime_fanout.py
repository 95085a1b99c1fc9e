"""Status push latency to 50 WebSocket clients through daphne and Redis; idle cost of the hub.

What it measures, in one run:

* **fan-out latency**: a worker-like child process (this script with ``--worker``: a
  ``StatusHub`` on the real table, pushing through ``realtime.broadcast`` and the real Redis)
  calls ``report("mqtt", "connected" | "disconnected")`` when told to, and prints the
  ``time.monotonic_ns()`` taken just before the call. ``--clients`` (50) aiohttp WebSocket
  clients in this process, connected to a real ``daphne config.asgi:application`` (another
  child), stamp each ``system_status`` push on arrival with the same system-wide clock. One
  change at a time (``--changes``, 200), each awaited by every client: p50/p99/max over every
  (change, client) pair, and of the slowest client per change. Beside it the old design's
  expected delay: a broadcast every 2 s tick, so a change waits uniform [0, 2 s) (p50 1 s),
  simulated over the same number of samples. Goal: p99 <= 10 ms.
* **idle**: then nothing changes for ``--idle`` (20) seconds, after ``--settle`` (11) more
  (PostgreSQL publishes an idle backend's counters up to 10 s late). Counted over the window:
  the hub's database calls and pushes (its own counters), messages the clients received,
  channel-layer group sends by the worker's publisher, transactions in the benchmark's
  database (``pg_stat_database``, daphne included), the worker's CPU and wake-ups (context
  switches of all its threads). Goal: 0 messages, 0 SQL statements.

The clients all live in this process's one event loop: the last of 50 reads its message
after the other 49 (~tens of µs each), which the per-change "slowest client" column shows.
The machine is shared (2 cores): compare the columns of one run.

Run: ``.venv/bin/python bench/realtime_fanout.py`` (~1 min; ``--changes 50 --idle 5`` quicker).
Needs PostgreSQL at ``BENCH_PG_URL`` (creates and drops ``bench_realtime_<pid>``) and Redis at
``REDIS_URL`` or ``BENCH_REDIS_URL`` (a group of this run's own).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
import uuid
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common, realtime_common
from bench.realtime_common import Clients, CommandChild, row, transactions

DB = common.run_name("bench_realtime")


# --- the worker-like child -----------------------------------------------------------------


async def worker_main() -> None:
    """A StatusHub fed by stdin: 'flip' reports a change, 'stats' prints counters as JSON."""
    import django

    django.setup()
    from realtime import broadcast
    from realtime.hub import StatusHub
    from services.clock import RealClock
    from services.dbthread import AsyncStore

    store = AsyncStore()
    calls = 0
    stages: list[tuple[int, int]] = []  # (publish called, group_send returned), ns

    class TimedLayer:
        """The channel layer, stamping when each group_send returned (stage times)."""

        def __init__(self) -> None:
            from channels.layers import get_channel_layer

            self.layer = get_channel_layer()

        async def group_send(self, group: str, message: dict[str, Any]) -> None:
            await self.layer.group_send(group, message)
            stages[-1] = (stages[-1][0], time.monotonic_ns())

    timed = TimedLayer()
    broadcast._publisher = broadcast.Publisher(layer=lambda: timed)

    def publish(payload: dict[str, Any], *, sequence: int, timestamp: Any) -> int:
        stages.append((time.monotonic_ns(), 0))
        return broadcast.system_status(payload, sequence=sequence, timestamp=timestamp)

    async def db_call(fn: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        return await store.call(fn, *args, **kwargs)

    hub = StatusHub(RealClock(), db_call, worker_id="bench", publish=publish)
    stopping = asyncio.Event()
    task = asyncio.create_task(hub.run(stopping))
    await hub.settled()
    hub.report("mqtt", "connected")  # starts online; the last of an even number of flips too
    await hub.settled()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    flips = 0
    print("ready", flush=True)
    while line := (await reader.readline()).decode().strip():
        if line == "flip":
            flips += 1
            event = "disconnected" if flips % 2 else "connected"
            started = time.monotonic_ns()
            hub.report("mqtt", event)
            print(f"reported {started}", flush=True)
        elif line == "stats":
            await hub.settled()
            publisher = broadcast.get_publisher()
            await publisher.aflush(5)
            stats = {
                "db_calls": calls,
                "pushes": hub.pushes,
                "group_sends": publisher.sent,
                "stages": stages[-flips:] if flips else [],
            }
            print("stats " + json.dumps(stats), flush=True)
    stopping.set()
    await task
    await store.close()


async def floor_phase(clients: Clients, changes: int) -> list[float]:
    """The floor: this process's publisher straight to the clients (no hub, no database)."""
    from realtime import broadcast
    from realtime.sequence import next_sequence
    from realtime.status import IntegrationStatus, system_status_payload

    payload = system_status_payload({"mqtt": IntegrationStatus("mqtt", True, True, "connected")})
    latencies: list[float] = []
    base = clients.received()
    for n in range(changes):
        started = time.monotonic_ns()
        broadcast.system_status(payload, sequence=next_sequence())
        await clients.wait_total(base + (n + 1) * clients.count)
        latencies += [c[-1][0] - started for c in clients.arrivals]
    return latencies


async def hub_phase(clients: Clients, worker: CommandChild, changes: int) -> dict[str, list[float]]:
    base = clients.received()
    reports: list[int] = []
    for n in range(changes):
        reports.append(int(await worker.command("flip", "reported ")))
        await clients.wait_total(base + (n + 1) * clients.count)
    stages = (await worker.stats())["stages"][-changes:]
    found: dict[str, list[float]] = {k: [] for k in ("all", "slowest", "written", "sent", "last")}
    for n, started in enumerate(reports):
        per_change = [c[len(c) - changes + n][0] - started for c in clients.arrivals]
        published, returned = stages[n]
        found["all"] += per_change
        found["slowest"].append(max(per_change))
        found["written"].append(published - started)
        found["sent"].append(returned - published)
        found["last"] += [started + latency - returned for latency in per_change]
    return found


async def idle_phase(
    clients: Clients, worker: CommandChild, daphne_pid: int, args: argparse.Namespace
) -> list[list[object]]:
    await asyncio.sleep(args.settle)  # a measurement window, not synchronisation
    before, messages, tx = await worker.stats(), clients.received(), transactions(DB)
    assert worker.proc is not None
    pids = {"worker": worker.proc.pid, "daphne": daphne_pid}
    cpu0 = {k: common.cpu_seconds(p) for k, p in pids.items()}
    ctx0 = {k: sum(common.context_switches(p)) for k, p in pids.items()}
    await asyncio.sleep(args.idle)
    cpu1 = {k: common.cpu_seconds(p) for k, p in pids.items()}
    ctx1 = {k: sum(common.context_switches(p)) for k, p in pids.items()}
    tx, messages = transactions(DB) - tx, clients.received() - messages
    after = await worker.stats()
    return [
        ["hub database calls (its only SQL)", after["db_calls"] - before["db_calls"]],
        ["hub pushes", after["pushes"] - before["pushes"]],
        ["channel-layer group sends (publisher)", after["group_sends"] - before["group_sends"]],
        ["messages received by the clients", messages],
        ["transactions in the benchmark's database (daphne too)", tx],
        *[[f"{k} CPU %", f"{100 * (cpu1[k] - cpu0[k]) / args.idle:.3f}"] for k in pids],
        *[[f"{k} wake-ups (context switches, all threads)", ctx1[k] - ctx0[k]] for k in pids],
    ]  # fmt: skip


async def measure(args: argparse.Namespace, env: dict[str, str], daphne: common.Child,
                  port: int) -> None:  # fmt: skip
    import aiohttp

    from bench.outbox_common import MachineLoad

    realtime_common.setup_django(env)
    from asgiref.sync import sync_to_async

    token = await sync_to_async(realtime_common.make_token)()
    worker = CommandChild([common.PYTHON, __file__, "--worker"], env)
    clients = Clients(f"ws://127.0.0.1:{port}/ws/alarm/?token={token}", args.clients)
    async with aiohttp.ClientSession() as session:
        await clients.connect(session)
        load = MachineLoad()
        daphne_cpu = common.cpu_seconds(daphne.pid)
        floor = await floor_phase(clients, args.changes)
        await worker.start()
        await clients.wait_total(clients.received() + args.clients)  # its first push
        hub = await hub_phase(clients, worker, args.changes)
        daphne_cpu = common.cpu_seconds(daphne.pid) - daphne_cpu
        machine = load.finish()
        idle = await idle_phase(clients, worker, daphne.pid, args)
        await clients.close()
        await worker.stop()

    tick = [random.uniform(0, 2.0) * 1e9 for _ in hub["all"]]
    print(f"\nfan-out: {args.changes} status changes x {args.clients} WebSocket clients "
          f"({len(hub['all'])} receipts), one daphne, Redis")  # fmt: skip
    print(
        common.table(
            ["", "p50 ms", "p99 ms", "max ms"],
            [
                row("report() in the worker -> client (every receipt)", hub["all"]),
                row("report() in the worker -> the slowest client", hub["slowest"]),
                row("floor: group_send from here -> client (no hub, no DB)", floor),
                row("old design: a broadcast every 2 s tick (simulated)", tick),
                row("  stage: report() -> written (the hub's transaction)", hub["written"]),
                row("  stage: written -> group_send returned (publisher)", hub["sent"]),
                row("  stage: group_send returned -> client (daphne)", hub["last"]),
            ],
        )
    )
    per_change = 1000 * daphne_cpu / (2 * args.changes)
    print(f"daphne CPU per change ({args.clients} sends): {per_change:.2f} ms; "
          f"machine during the fan-out: busy {machine['busy']:.0f} %, "
          f"others {machine['others']:.0f} % of {os.cpu_count()} cores")  # fmt: skip
    print("goal: p99 <= 10 ms")
    print(f"\nidle: {args.idle:g} s with nothing changing (after {args.settle:g} s settling)")
    print(common.table(["what", "count"], idle))
    print("goal: 0 messages, 0 SQL statements")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--changes", type=int, default=200)
    parser.add_argument("--idle", type=float, default=20.0)
    parser.add_argument("--settle", type=float, default=11.0)
    parser.add_argument("--keep-databases", action="store_true")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        asyncio.run(worker_main())
        return
    common.migrated_database(DB)
    port = common.free_port()
    env = common.django_env(
        common.db_url(DB),
        REALTIME_GROUP=f"bench_realtime_{uuid.uuid4().hex[:8]}",
        ALLOWED_HOSTS="localhost,127.0.0.1",
        LOG_LEVEL="WARNING",
    )
    daphne = realtime_common.daphne(port, env)
    try:
        asyncio.run(measure(args, env, daphne, port))
    finally:
        daphne.stop()
        if not args.keep_databases:
            common.drop_database(DB)


if __name__ == "__main__":
    main()
