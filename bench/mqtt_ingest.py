"""MQTT ingest rate and idle cost: the worker's transport (paho driven by the asyncio loop)
beside the same client on paho's ``loop_start()`` thread, measured in the same run.

Ingest: a child process subscribes ``<base>/#`` with the Zigbee2MQTT layer on top of the
transport, its ``on_state`` counting (no database: transport, parsing and the ordered sink);
this process publishes ``--count`` device messages (``{"contact": ..., "battery": ...}``, QoS 0,
as Zigbee2MQTT does) to Mosquitto as fast as paho sends them. Per subscriber: messages/s from
the first ``on_state`` to the last, and its CPU seconds (all threads) per 1,000 messages.
``--rounds`` alternate the two subscribers; medians are printed.

Idle: for ``--idle`` seconds (60), connected, subscribed and quiet, side by side: the worker
(``manage.py runworker --only leadership,mqtt``: the MQTT component, its leadership lock and
the LISTEN connection), the asyncio transport alone, and a paho ``loop_start()`` client alone.
Wake-ups are context switches summed over all threads (``/proc/<pid>/task/*/status``); CPU is
psutil's user+system; both per minute. Keepalive ``--keepalive`` (60 s) for all.

Run: ``.venv/bin/python bench/mqtt_ingest.py`` (~80 s), ``--idle 20 --count 5000`` for a quick
one. Needs Mosquitto at ``MQTT_URL`` (default mqtt://127.0.0.1:1883) and PostgreSQL at
``BENCH_PG_URL`` (the worker's own ``bench_mqtt_<pid>`` database, dropped at the end).
Numbers are noisy on a shared machine: compare the columns of one run.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from bench import common

WORKER_DB = common.run_name("bench_mqtt")
MODES = {"asyncio": "paho on the asyncio loop (ours)", "thread": "paho loop_start() thread"}


def subject(mode: str, url: str, **options: object) -> common.Child:
    args = [common.PYTHON, "-m", "bench.mqtt_subjects", mode, "--url", url]
    for name, value in options.items():
        args += [f"--{name}", str(value)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "LOG_LEVEL": "WARNING"}
    return common.Child(args, env, label=mode)


def publisher(url: str) -> paho.Client:
    host, port = url.removeprefix("mqtt://").rsplit(":", 1)
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{os.getpid()}")
    client.max_queued_messages_set(0)
    client.connect(host, int(port))
    client.loop_start()
    return client


def ingest_once(mode: str, url: str, count: int) -> tuple[float, float, int]:
    """(messages/s, CPU s per 1,000, received) for one subscriber process."""
    base = f"bench-{secrets.token_hex(4)}"
    child = subject(f"ingest-{mode}", url, base=base, count=count)
    try:
        child.wait_for("ready", timeout=30)
        pub = publisher(url)
        try:
            for n in range(count):
                payload = json.dumps({"contact": n % 2 == 0, "battery": n % 100})
                pub.publish(f"{base}/device{n % 50}", payload, qos=0)
            child.wait_for("done", timeout=120)
        finally:
            pub.disconnect()
            pub.loop_stop()
        line = next(line for _, line in child.lines if line.startswith("done"))
        _, received, seconds, cpu = line.split()
        rate = int(received) / max(float(seconds), 1e-9)
        return rate, float(cpu) / max(int(received), 1) * 1000, int(received)
    finally:
        child.stop()


def ingest(url: str, count: int, rounds: int) -> None:
    results: dict[str, list[tuple[float, float, int]]] = {m: [] for m in MODES}
    for _ in range(rounds):
        for mode in MODES:
            results[mode].append(ingest_once(mode, url, count))
    rows = []
    for mode, label in MODES.items():
        rates, cpus, received = zip(*results[mode], strict=True)
        rows.append([
            label, f"{statistics.median(rates):,.0f}", f"{statistics.median(cpus):.3f}",
            f"{min(received)} / {count}",
        ])  # fmt: skip
    print(f"\nIngest: {count:,} Zigbee2MQTT device messages (QoS 0) through {url}; "
          f"median of {rounds} alternating rounds")  # fmt: skip
    print(common.table(["subscriber", "messages/s", "CPU s / 1,000", "received (min)"], rows))


def idle(url: str, seconds: float, keepalive: int) -> None:
    common.migrated_database(WORKER_DB)
    try:
        env = common.django_env(
            common.db_url(WORKER_DB), MQTT_URL=url, WORKER_HEALTH_PORT=str(common.free_port())
        )
        worker = common.Child(
            [*common.worker_args(), "--only", "leadership,mqtt"], env, label="worker"
        )
        children = {
            "runworker --only leadership,mqtt": worker,
            MODES["asyncio"] + ", alone": subject("idle-asyncio", url, keepalive=keepalive),
            MODES["thread"] + ", alone": subject("idle-thread", url, keepalive=keepalive),
        }
        try:
            worker.wait_for("event=mqtt.connected", timeout=60)
            for child in children.values():
                if child is not worker:
                    child.wait_for("ready", timeout=30)
            time.sleep(2)  # let start-up work (first queries, SUBACKs) finish
            before = {k: (common.context_switches(c.pid), common.cpu_seconds(c.pid))
                      for k, c in children.items()}  # fmt: skip
            started = time.perf_counter()
            time.sleep(seconds)
            wall = time.perf_counter() - started
            rows = []
            for label, child in children.items():
                (v0, i0), cpu0 = before[label]
                v1, i1 = common.context_switches(child.pid)
                cpu1 = common.cpu_seconds(child.pid)
                wakeups = (v1 - v0) + (i1 - i0)
                rows.append([
                    label, f"{wakeups * 60 / wall:.1f}", f"{(cpu1 - cpu0) * 60 / wall * 1000:.1f}",
                    common.thread_count(child.pid),
                ])  # fmt: skip
        finally:
            for child in children.values():
                child.stop()
    finally:
        common.drop_database(WORKER_DB)
    print(f"\nIdle, connected and quiet, over {wall:.0f} s (keepalive {keepalive} s; the "
          "worker's keepalive is the configured default, 60 s)")  # fmt: skip
    print(common.table(["process", "wake-ups / min", "CPU ms / min", "threads"], rows))


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("MQTT_URL") or "mqtt://127.0.0.1:1883")
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--idle", type=float, default=60.0)
    parser.add_argument("--keepalive", type=int, default=60)
    args = parser.parse_args()
    ingest(args.url, args.count, args.rounds)
    idle(args.url, args.idle, args.keepalive)


if __name__ == "__main__":
    run()
