"""Spawning ``manage.py runworker`` as a real process against the test database."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Coroutine, Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from django.conf import settings

from tests.acceptance.private_pg import PrivatePostgres, running_private_postgres
from tests.fakes.provider_servers import (
    FakeProviders,
    FakeResponse,
    RecordedRequest,
    running_fake_providers,
)

BASE_DIR = Path(__file__).resolve().parent.parent.parent


def database_url() -> str:
    """A DATABASE_URL for the test database pytest-django created (it rewrote NAME)."""
    db = settings.DATABASES["default"]
    auth = quote(db["USER"] or "")
    if db["PASSWORD"]:
        auth += ":" + quote(db["PASSWORD"])
    host = db["HOST"] or ""
    if host.startswith("/"):
        return f"postgresql://{auth}@/{db['NAME']}?host={host}"
    return f"postgresql://{auth}@{host}:{db['PORT'] or 5432}/{db['NAME']}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Worker:
    """One runworker process; its log lines are read by a thread and matched by event key."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.health_port = int(env["WORKER_HEALTH_PORT"])
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "runworker", *args],
            cwd=BASE_DIR,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    # Notified on every line any worker reads: wait_total() waits on several workers at once.
    _line_read = threading.Condition()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
            with Worker._line_read:
                Worker._line_read.notify_all()
        self._queue.put(None)
        with Worker._line_read:
            Worker._line_read.notify_all()

    def wait_event(self, event: str, timeout: float = 20.0) -> str:
        """Block until a log line with ``event=<event>`` appears; return it."""
        key = f"event={event}"
        for line in self.lines:
            if key in line.split():
                return line
        while True:
            try:
                new = self._queue.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no {key} within {timeout}s; log:\n" + self.log()) from None
            if new is None:
                raise AssertionError(f"worker exited before {key}; log:\n" + self.log())
            self.lines.append(new)
            if key in new.split():
                return new

    def count(self, event: str) -> int:
        return sum(f"event={event}" in line.split() for line in self.lines)

    def wait_count(self, event: str, count: int, timeout: float = 20.0) -> list[str]:
        """Block until ``count`` log lines with ``event=<event>`` have appended; return them."""
        key = f"event={event}"
        found = [line for line in self.lines if key in line.split()]
        deadline = time.monotonic() + timeout
        while len(found) < count:
            try:
                new = self._queue.get(timeout=max(deadline - time.monotonic(), 0.0))
            except queue.Empty:
                raise AssertionError(
                    f"{len(found)} of {count} {key} within {timeout}s; log:\n" + self.log()
                ) from None
            if new is None:
                self._queue.put(None)  # later waits see the exit too
                raise AssertionError(
                    f"worker exited after {len(found)} of {count} {key}; log:\n" + self.log()
                )
            self.lines.append(new)
            if key in new.split():
                found.append(new)
        return found

    def _take_lines(self) -> bool:
        """Move the lines read so far into ``lines``; False once the process's output ended."""
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                return True
            if line is None:
                self._queue.put(None)  # left for wait_exit()
                return False
            self.lines.append(line)

    def healthz(self) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.health_port}/healthz"
        with urllib.request.urlopen(url, timeout=5) as response:
            body: dict[str, Any] = json.load(response)
        return body

    def signal(self, signum: signal.Signals) -> None:
        self.proc.send_signal(signum)

    def wait_exit(self, timeout: float = 45.0) -> int:
        code = self.proc.wait(timeout=timeout)
        while (line := self._queue.get(timeout=5)) is not None:
            self.lines.append(line)
        return code

    def log(self) -> str:
        while not self._queue.empty():
            line = self._queue.get_nowait()
            if line is not None:
                self.lines.append(line)
        return "\n".join(self.lines[-60:])

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture
def worker_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(
        DATABASE_URL=database_url(),
        WORKER_TASK_MODULES="tests.acceptance.worker_tasks",
        WORKER_HEALTH_PORT=str(free_port()),
        ACCEPTANCE_TICK_LOG=str(tmp_path / "ticks.log"),
        PYTHONUNBUFFERED="1",
        LOG_LEVEL="INFO",
    )
    return env


Spawn = Callable[..., Worker]


@pytest.fixture
def spawn(worker_env: dict[str, str]) -> Iterator[Spawn]:
    """``spawn(env=None, *args)``: a worker, killed at the end of the test if still running."""
    started: list[Worker] = []

    def start(env: dict[str, str] | None = None, *args: str) -> Worker:
        worker = Worker(env or worker_env, *args)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.kill()


def wait_total(workers: list[Worker], event: str, count: int, timeout: float = 20.0) -> list[int]:
    """Block until the workers together logged ``count`` ``event=<event>`` lines; per worker."""
    key, deadline = f"event={event}", time.monotonic() + timeout
    seen, counts = [0] * len(workers), [0] * len(workers)
    with Worker._line_read:
        while True:
            alive = [worker._take_lines() for worker in workers]
            for n, worker in enumerate(workers):
                new, seen[n] = worker.lines[seen[n] :], len(worker.lines)
                counts[n] += sum(key in line.split() for line in new)
            if sum(counts) >= count:
                return counts
            remaining = deadline - time.monotonic()
            if not any(alive) or remaining <= 0:
                logs = "\n---\n".join(worker.log() for worker in workers)
                raise AssertionError(f"{counts} of {count} event={event}; logs:\n{logs}")
            Worker._line_read.wait(timeout=remaining)


class ThreadedFakeProviders:
    """The fake providers (tests.fakes) served by an event loop in a thread of the test process.

    Synchronous tests block on worker log lines; the server must keep answering meanwhile.
    """

    def __init__(self) -> None:
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._fake: FakeProviders | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._serve, name="fake-providers", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout=10) or self._error is not None:
            raise RuntimeError("the fake providers did not start") from self._error

    def _serve(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported by __init__ if it happens while starting
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        async with running_fake_providers() as fake:
            self._fake, self._loop, self._stop = fake, asyncio.get_running_loop(), asyncio.Event()
            self._ready.set()
            await self._stop.wait()

    @property
    def fake(self) -> FakeProviders:
        assert self._fake is not None
        return self._fake

    def _call[T](self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        assert self._loop is not None
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout=timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise

    def config_for(self, provider_type: str, **overrides: Any) -> dict[str, Any]:
        return self.fake.config_for(provider_type, **overrides)

    def respond(self, path_prefix: str, responses: Iterable[FakeResponse]) -> None:
        scripted = list(responses)

        async def script() -> None:
            self.fake.respond(path_prefix, scripted)

        self._call(script(), timeout=5)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[RecordedRequest]:
        """The recorded requests once there are at least ``count`` (TimeoutError otherwise)."""
        return self._call(self.fake.wait_for(count, timeout), timeout=timeout + 5)

    def requests(self) -> list[RecordedRequest]:
        async def snapshot() -> list[RecordedRequest]:
            return list(self.fake.requests)

        return self._call(snapshot(), timeout=5)

    def release(self, event: asyncio.Event) -> None:
        """Set an event that held answers (``FakeResponse(release=event)``) wait for."""
        assert self._loop is not None
        self._loop.call_soon_threadsafe(event.set)

    def close(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)


@pytest.fixture
def fake_providers() -> Iterator[ThreadedFakeProviders]:
    """A local server speaking each provider's API, in a thread; closing it ends held answers."""
    fake = ThreadedFakeProviders()
    yield fake
    fake.close()


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    """A PostgreSQL of this test alone (restartable), migrated: ``.url`` is its database."""
    with running_private_postgres() as server:
        migrate = subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput"],
            cwd=BASE_DIR,
            env={**os.environ, "DATABASE_URL": server.url},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert migrate.returncode == 0, migrate.stdout + migrate.stderr
        yield server
