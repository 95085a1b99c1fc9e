"""Helpers of the realtime benchmarks (``realtime_fanout.py``, ``mqtt_outage.py``).

Run directly (``make bench`` runs every ``bench/*.py``) it only says so and exits 0.

What is here: a real ``daphne config.asgi:application`` child, this process set up as a
Django client of the benchmark's database (users, tokens, configuration rows), WebSocket
clients that stamp every ``system_status`` push on arrival, and the printing helpers.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import time
import uuid
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common

ORIGIN = "http://localhost"
SYSTEM_STATUS = '{"type": "system_status"'  # how a push starts (json.dumps, keys in order)


def daphne(port: int, env: dict[str, str]) -> common.Child:
    """A real daphne on ``port``; returns once it listens."""
    child = common.Child(
        [common.PYTHON, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
         "config.asgi:application"],
        {**env},
        label="daphne",
    )  # fmt: skip
    try:
        wait_port(port, child)
    except BaseException:
        child.stop()
        raise
    return child


def wait_port(port: int, child: common.Child, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            if child.popen.poll() is not None:
                raise RuntimeError(f"{child.label} exited:\n" + child.tail()) from None
            time.sleep(0.05)  # a starting server's port: the only way to see it is to try
    raise TimeoutError(f"{child.label} did not listen:\n" + child.tail())


def setup_django(env: dict[str, str]) -> None:
    """This process as a Django client of the benchmark's database (and its Redis group)."""
    import django

    names = ("DATABASE_URL", "REDIS_URL", "REALTIME_GROUP", "NOTIFICATIONS_KEY")
    os.environ.update({k: env[k] for k in names if k in env})
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    django.setup()


def make_token() -> str:
    """A new user's WebSocket token (sync ORM code: call it through sync_to_async)."""
    from django.contrib.auth import get_user_model

    from realtime import tokens

    user = get_user_model().objects.create_user(f"bench-{uuid.uuid4().hex[:6]}")
    return tokens.make_token(user)


class Clients:
    """``count`` WebSocket clients in this process's event loop.

    Each ``system_status`` message (the snapshot on connect, then every push) is stamped
    with ``time.monotonic_ns()`` (one clock for every process of the machine) as it
    arrives, and kept with its text: only a cheap look at the start of each message while
    they arrive, so the last of 50 clients is not delayed by the parsing of the 49 before
    it. ``messages`` counts every push of any type (not the snapshots).
    """

    def __init__(self, url: str, count: int) -> None:
        self.url, self.count = url, count
        self.arrivals: list[list[tuple[int, str]]] = [[] for _ in range(count)]
        self.messages = 0
        self.changed = asyncio.Event()
        self.sockets: list[Any] = []
        self.tasks: list[asyncio.Task[None]] = []

    async def connect(self, session: Any) -> None:
        for n in range(self.count):
            ws = await session.ws_connect(self.url, headers={"Origin": ORIGIN})
            for _ in range(2):  # alarm_state and system_status snapshots
                text = await ws.receive_str(timeout=10)
                if text.startswith(SYSTEM_STATUS):  # what the client shows until a push
                    self.arrivals[n].append((time.monotonic_ns(), text))
            self.sockets.append(ws)
            self.tasks.append(asyncio.create_task(self._read(n, ws)))

    async def _read(self, n: int, ws: Any) -> None:
        import aiohttp

        async for message in ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                break
            at = time.monotonic_ns()
            self.messages += 1
            if message.data.startswith(SYSTEM_STATUS):
                self.arrivals[n].append((at, message.data))
                self.changed.set()

    def received(self) -> int:
        return sum(len(a) for a in self.arrivals)

    def marks(self) -> list[int]:
        """How many pushes each client has received so far (to look at the next ones)."""
        return [len(a) for a in self.arrivals]

    async def wait_total(self, total: int, within: float = 10) -> None:
        async with asyncio.timeout(within):
            while self.received() < total:
                self.changed.clear()
                await self.changed.wait()

    async def wait_each(self, marks: list[int], within: float = 10) -> None:
        """Until every client has received a push past its mark."""
        async with asyncio.timeout(within):
            while any(len(a) <= m for a, m in zip(self.arrivals, marks, strict=True)):
                self.changed.clear()
                await self.changed.wait()

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        for ws in self.sockets:
            await ws.close()


class CommandChild:
    """A child process spoken to over stdin/stdout: it prints ``ready``, then answers
    commands (``stats`` -> ``stats {json}``); closing its stdin stops it."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.args, self.env = args, env
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *self.args, cwd=common.ROOT, env=self.env,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        await self.expect("ready")

    async def expect(self, prefix: str) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        while True:
            line = (await asyncio.wait_for(self.proc.stdout.readline(), 30)).decode()
            if not line:
                raise RuntimeError(f"the child {self.args[1:]} exited")
            if line.startswith(prefix):
                return line[len(prefix) :].strip()

    async def command(self, text: str, answer: str) -> str:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(text.encode() + b"\n")
        await self.proc.stdin.drain()
        return await self.expect(answer)

    async def stats(self) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(await self.command("stats", "stats "))
        return found

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                await asyncio.wait_for(self.proc.wait(), 15)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


def transactions(dbname: str) -> int:
    """Committed and rolled-back transactions of ``dbname`` so far (every process in it)."""
    with common.admin() as conn:
        row = conn.execute(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s",
            (dbname,),
        ).fetchone()
    return int(row[0]) if row else 0


def ms(ns: float) -> str:
    return f"{ns / 1e6:.2f}"


def row(label: str, values: list[float]) -> list[str]:
    """``label``, p50, p99 and max of nanosecond ``values``, in milliseconds."""
    return [label, ms(common.percentile(values, 50)), ms(common.percentile(values, 99)),
            ms(max(values))]  # fmt: skip


if __name__ == "__main__":
    print("bench/realtime_common.py holds helpers of the realtime benchmarks; it measures nothing.")
