"""Spawning ``manage.py runworker`` as a real process against the test database."""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings

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

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

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
