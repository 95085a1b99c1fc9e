"""Fixtures and helpers of the realtime tests (imported by those modules).

A channel-layer group of the test's own, a recording alarm snapshot source, users with a
session cookie, a private ``redis-server`` a test may stop and start, and a real daphne
serving ``config.asgi`` against the test database.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client

from realtime import snapshots
from tests.acceptance.conftest import database_url, free_port

BASE_DIR = Path(__file__).resolve().parent.parent
ORIGIN = "http://localhost"
PASSWORD = "correct horse battery staple"


@pytest.fixture(name="realtime_group")
def realtime_group_fixture(settings: Any) -> str:
    """Every push and consumer of this test in a group of its own (others share Redis)."""
    settings.REALTIME_GROUP = f"test_realtime_{uuid.uuid4().hex[:12]}"
    return str(settings.REALTIME_GROUP)


class AlarmSource:
    """Stands in for ``alarm.services.alarm_state_snapshot``: records calls, returns a dict."""

    def __init__(self) -> None:
        self.calls = 0
        self.snapshot: dict[str, Any] = {
            "state": "disarmed",
            "previous_state": "armed_home",
            "changed_at": "2025-06-02T12:00:00+00:00",
            "delay": None,
        }

    def __call__(self) -> dict[str, Any]:
        self.calls += 1
        return dict(self.snapshot)


@pytest.fixture(name="alarm_source")
def alarm_source_fixture() -> Iterator[AlarmSource]:
    source = AlarmSource()
    previous = snapshots.set_alarm_snapshot_source(source)
    yield source
    snapshots.set_alarm_snapshot_source(previous)


def make_user(username: str | None = None, **fields: Any) -> Any:
    username = username or f"user_{uuid.uuid4().hex[:8]}"
    return get_user_model().objects.create_user(username, password=PASSWORD, **fields)


def session_cookie(user: Any) -> str:
    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


def ws_headers(cookie: str | None = None, origin: str | None = ORIGIN) -> list[tuple[bytes, bytes]]:
    headers = [(b"host", b"localhost")]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    if cookie is not None:
        headers.append((b"cookie", cookie.encode()))
    return headers


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    from services.embedded import _redis_binary

    return str(_redis_binary())


def wait_listening(
    port: int, timeout: float = 20.0, proc: subprocess.Popen[Any] | None = None
) -> None:
    """Until something accepts on 127.0.0.1:port (a server starting); raises on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited ({proc.returncode}) before listening")
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing listens on {port} after {timeout}s")
        time.sleep(0.02)  # a starting server's port: the only way to see it is to try


class PrivateRedis:
    """A ``redis-server`` of this test alone, on a free port; stop() and start() at will."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.dir = tmp
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [
            redis_server_binary(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.dir),
        ]  # fmt: skip
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_listening(self.port, proc=self.proc)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None


@pytest.fixture(name="private_redis")
def private_redis_fixture(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()


class Daphne:
    """``daphne config.asgi:application`` in a process, on the test database."""

    def __init__(self, env: dict[str, str], port: int | None = None) -> None:
        self.env = env
        self.port = port or free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port),
             "config.asgi:application"],
            cwd=BASE_DIR,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        try:
            wait_listening(self.port, proc=self.proc)
        except BaseException:
            self.stop()
            raise

    def restart(self) -> Daphne:
        """Stop this one and start another on the same port (clients reconnect to it)."""
        self.stop()
        return Daphne(self.env, self.port)

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/alarm/"

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        assert self.proc.stdout is not None
        return self.proc.stdout.read()


def daphne_env(group: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(
        DATABASE_URL=database_url(),
        REDIS_URL=settings.REDIS_URL,
        REALTIME_GROUP=group,
        ALLOWED_HOSTS="localhost,127.0.0.1",
        PYTHONUNBUFFERED="1",
        LOG_LEVEL="WARNING",
    )
    env.update(extra)
    return env


@pytest.fixture(name="daphne")
def daphne_fixture(realtime_group: str) -> Iterator[Daphne]:
    server = Daphne(daphne_env(realtime_group))
    yield server
    server.stop()
