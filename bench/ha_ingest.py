"""Home Assistant ingest: state_changed events/s into ``on_state``, and the cost of a quiet
connection, each beside a baseline measured in the same run.

The fake Home Assistant (``tests/fakes/home_assistant_server.py``) runs in a child process
(``--serve``) with ``--entities`` (200) entities; the clients run in this process, whose CPU
(``time.process_time``), context switches (``/proc/self/task/*/status``) and event-loop
wake-ups (calls of the selector that could sleep, counted by wrapping it) are measured.

* **ingest**: the child pre-builds ``--events`` (20,000) ``state_changed`` frames (each a real
  change, ~600 bytes, spread over the entities) and writes them as fast as it can; timed from
  the request that fires them to the last ``on_state`` call. ``on_state`` here only counts (the
  real one writes to PostgreSQL; see the alarm benchmarks for that cost). Beside it: a bare
  aiohttp loop that authenticates, subscribes and only ``json.loads`` each frame (the floor of
  this machine and this fake).
* **idle**: the client connected and quiet for ``--idle-seconds`` (60) with the default
  heartbeat (30 s): wake-ups, context switches and CPU per minute, pings sent. Beside it, for
  as long: the old design's reachability poll, ``GET /api/states`` every 30 s.

Run: ``.venv/bin/python bench/ha_ingest.py`` (~2.5 min), ``--quick`` (~1 min: 5,000 events,
20 s idle). Needs nothing but the project's venv (no database). Numbers are noisy on a shared
machine: compare the columns of one run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp
from aiohttp import web

from bench import common

HEARTBEAT = 30.0


# --- the child: the fake Home Assistant with a control API ---------------------------------


async def serve(entities: int) -> None:
    from tests.fakes.home_assistant_server import running_fake_home_assistant

    async with running_fake_home_assistant() as ha:
        for n in range(entities):
            ha.set_state(
                f"binary_sensor.sensor_{n}",
                "off",
                {"friendly_name": f"Sensor {n}", "device_class": "door"},
            )
        prepared: list[tuple[web.WebSocketResponse, str]] = []

        async def prepare(request: web.Request) -> web.Response:
            prepared[:] = list(build_frames(ha, int(request.query["count"])))
            return web.json_response({"frames": len(prepared)})

        async def fire(request: web.Request) -> web.Response:
            for ws, frame in prepared:
                await ws.send_str(frame)
            return web.json_response({"sent": len(prepared)})

        app = web.Application()
        app.router.add_post("/prepare", prepare)
        app.router.add_post("/fire", fire)
        runner = web.AppRunner(app, access_log=None, handle_signals=True)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        control = f"http://127.0.0.1:{runner.addresses[0][1]}"
        print(f"READY {ha.url} {ha.token} {control}", flush=True)
        await asyncio.Event().wait()  # until SIGTERM


def build_frames(ha: Any, count: int) -> Iterator[tuple[web.WebSocketResponse, str]]:
    ids = list(ha.states)
    fired = datetime.now(UTC).isoformat()
    for conn in ha._live():
        subscription = next(i for i, kind in conn.subscriptions.items() if kind == "state_changed")
        for n in range(count):
            entity_id = ids[n % len(ids)]
            old = ha.states[entity_id]
            new = {**old, "state": f"v{n}", "last_changed": fired, "last_updated": fired}
            ha.states[entity_id] = new
            event = {
                "event_type": "state_changed",
                "origin": "LOCAL",
                "time_fired": fired,
                "data": {"entity_id": entity_id, "old_state": old, "new_state": new},
                "context": {"id": f"01J{n:023d}", "parent_id": None, "user_id": None},
            }
            yield conn.ws, json.dumps({"id": subscription, "type": "event", "event": event})


# --- measuring this process ----------------------------------------------------------------


class Wakeups:
    """Counts the event loop's selector calls that may sleep: each return is a wake-up."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.count = 0
        selector = loop._selector  # type: ignore[attr-defined]
        original = selector.select

        def select(timeout: float | None = None) -> Any:
            if timeout is None or timeout > 0:
                self.count += 1
            return original(timeout)

        selector.select = select


class Meter:
    def __init__(self, wakeups: Wakeups) -> None:
        self.wakeups = wakeups

    def __enter__(self) -> Meter:
        self.t0, self.cpu0 = time.perf_counter(), time.process_time()
        self.w0, self.cs0 = self.wakeups.count, sum(common.context_switches(os.getpid()))
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.t0
        self.cpu = time.process_time() - self.cpu0
        self.wakes = self.wakeups.count - self.w0
        self.switches = sum(common.context_switches(os.getpid())) - self.cs0


async def post(http: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with http.post(url) as response:
        response.raise_for_status()
        return dict(await response.json())


# --- the subjects --------------------------------------------------------------------------


class Counter:
    """on_state that only counts, and says when ``target`` calls arrived."""

    def __init__(self) -> None:
        self.calls = 0
        self.target = 0
        self.done = asyncio.Event()

    async def __call__(self, entity_id: str, state: str, attributes: Any = None, **kw: Any) -> bool:
        self.calls += 1
        if self.target and self.calls >= self.target:
            self.done.set()
        return True


def client_for(url: str, token: str, on_state: Counter, connected: asyncio.Event) -> Any:
    from services.clock import RealClock
    from services.integrations.home_assistant import HomeAssistantClient, HomeAssistantSettings

    def report(integration: str, event: str, **kw: Any) -> None:
        if event == "connected":
            connected.set()

    settings = HomeAssistantSettings(url, token, heartbeat_interval=HEARTBEAT)
    return HomeAssistantClient(settings, clock=RealClock(), report=report, on_state=on_state)


async def ingest_client(url: str, token: str, control: str, events: int, wake: Wakeups) -> dict:
    counter, connected = Counter(), asyncio.Event()
    client = client_for(url, token, counter, connected)
    stopping = asyncio.Event()
    task = asyncio.create_task(client.run(stopping))
    async with aiohttp.ClientSession() as http:
        await asyncio.wait_for(connected.wait(), 30)
        await post(http, f"{control}/prepare?count={events}")
        counter.target = counter.calls + events
        with Meter(wake) as meter:
            await post(http, f"{control}/fire")
            await asyncio.wait_for(counter.done.wait(), 300)
    stopping.set()
    await task
    return {"seconds": meter.seconds, "cpu": meter.cpu, "events": events}


async def ingest_bare(url: str, token: str, control: str, events: int, wake: Wakeups) -> dict:
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(
            f"{url.replace('http', 'ws')}/api/websocket", max_msg_size=16 * 2**20
        ) as ws,
    ):
        await ws.receive_json()
        await ws.send_json({"type": "auth", "access_token": token})
        await ws.receive_json()
        await ws.send_json({"id": 1, "type": "subscribe_events", "event_type": "state_changed"})
        await ws.receive_json()
        await post(http, f"{control}/prepare?count={events}")
        seen = 0
        with Meter(wake) as meter:
            fire = asyncio.create_task(post(http, f"{control}/fire"))
            while seen < events:
                message = await ws.receive()
                if json.loads(message.data).get("type") == "event":
                    seen += 1
            await fire
    return {"seconds": meter.seconds, "cpu": meter.cpu, "events": events}


async def idle_client(url: str, token: str, seconds: float, wake: Wakeups) -> dict:
    counter, connected = Counter(), asyncio.Event()
    client = client_for(url, token, counter, connected)
    stopping = asyncio.Event()
    task = asyncio.create_task(client.run(stopping))
    await asyncio.wait_for(connected.wait(), 30)
    await asyncio.sleep(1.0)  # let the connect's stragglers settle
    pings = client.health()["pings"]
    with Meter(wake) as meter:
        await asyncio.sleep(seconds)
    pings = client.health()["pings"] - pings
    stopping.set()
    await task
    return {"meter": meter, "requests": pings}


async def idle_poller(url: str, token: str, seconds: float, wake: Wakeups) -> dict:
    """The old design: GET /api/states every 30 s (its reachability and sync poll)."""
    requests = 0
    async with aiohttp.ClientSession() as http:

        async def poll_forever() -> None:
            nonlocal requests
            while True:
                async with http.get(
                    f"{url}/api/states", headers={"Authorization": f"Bearer {token}"}
                ) as r:
                    json.loads(await r.read())
                requests += 1
                await asyncio.sleep(HEARTBEAT)

        poller = asyncio.create_task(poll_forever())
        await asyncio.sleep(1.0)
        with Meter(wake) as meter:
            await asyncio.sleep(seconds)
        poller.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await poller
    return {"meter": meter, "requests": requests - 1}


# --- the run -------------------------------------------------------------------------------


async def measure(args: argparse.Namespace, url: str, token: str, control: str) -> None:
    wake = Wakeups(asyncio.get_running_loop())
    print(f"ingest: {args.events} state_changed events over {args.entities} entities")
    ours = await ingest_client(url, token, control, args.events, wake)
    bare = await ingest_bare(url, token, control, args.events, wake)
    rows = []
    for label, key in [
        ("events/s", "rate"),
        ("CPU-s per 1,000 events", "cpu_per_k"),
        ("wall s", "seconds"),
    ]:
        cells = []
        for result in (ours, bare):
            value = {
                "rate": result["events"] / result["seconds"],
                "cpu_per_k": result["cpu"] / result["events"] * 1000,
                "seconds": result["seconds"],
            }[key]
            cells.append(f"{value:,.0f}" if key == "rate" else f"{value:.3f}")
        rows.append([label, *cells])
    print(common.table(["", "HomeAssistantClient -> on_state", "bare aiohttp + json.loads"], rows))

    print(
        f"\nidle: connection up and quiet, {args.idle_seconds:g} s each (heartbeat {HEARTBEAT:g} s)"
    )
    quiet = await idle_client(url, token, args.idle_seconds, wake)
    poll = await idle_poller(url, token, args.idle_seconds, wake)
    per_minute = 60.0 / args.idle_seconds
    rows = []
    for label, get in [
        # Minus one: the measuring sleep's own wake-up at the end of the window.
        ("event-loop wake-ups / min", lambda r: f"{(r['meter'].wakes - 1) * per_minute:.1f}"),
        ("context switches / min", lambda r: f"{r['meter'].switches * per_minute:.1f}"),
        ("CPU %", lambda r: f"{r['meter'].cpu / r['meter'].seconds * 100:.3f}"),
        ("pings or requests / min", lambda r: f"{r['requests'] * per_minute:.1f}"),
    ]:
        rows.append([label, get(quiet), get(poll)])
    print(common.table(["", "HomeAssistantClient (ping 30 s)", "GET /api/states every 30 s"], rows))
    print("goal: at idle only the heartbeat wakes the loop (<= 2 per ping: its timer, the pong)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--entities", type=int, default=200)
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--quick", action="store_true", help="5,000 events, 20 s idle")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.entities))
        return 0
    if args.quick:
        args.events, args.idle_seconds = 5_000, 20.0
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    child = common.Child(
        [common.PYTHON, __file__, "--serve", "--entities", str(args.entities)], env, label="fake-ha"
    )
    try:
        child.wait_for("READY", 30)
        line = next(text for _, text in child.lines if text.startswith("READY"))
        _, url, token, control = line.split()
        asyncio.run(measure(args, url, token, control))
    finally:
        child.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
