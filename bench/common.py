"""Helpers shared by the benchmarks in ``bench/``; not a benchmark itself.

Run directly (``make bench`` runs every ``bench/*.py``) it only says so and exits 0.

What is here: throw-away PostgreSQL databases (created, migrated and dropped by the
benchmarks), the environment a benchmarked ``manage.py runworker`` gets, a child process whose
output lines are time-stamped as they arrive, per-process CPU and context-switch counters, and
percentile helpers.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
# The server the benchmarks create their databases on (never ``app`` or ``test_*``).
PG_URL = os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432")
# The worker never connects to Redis; a URL only keeps settings from starting the embedded one.
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")


def run_name(base: str) -> str:
    """A database name of this run: concurrent runs (and other clones) never share one."""
    return f"{base}_{os.getpid()}"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for a worker's WORKER_HEALTH_PORT)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def db_url(name: str, pg_url: str = PG_URL) -> str:
    return f"{pg_url.rstrip('/')}/{name}"


@contextlib.contextmanager
def admin(pg_url: str = PG_URL, dbname: str = "postgres") -> Iterator[psycopg.Connection[Any]]:
    """An autocommit psycopg connection to ``dbname`` (the maintenance database by default)."""
    conn = psycopg.connect(db_url(dbname, pg_url), autocommit=True, application_name="bench")
    try:
        yield conn
    finally:
        conn.close()


def fresh_database(name: str, *, template: str | None = None, pg_url: str = PG_URL) -> None:
    """Drop ``name`` if it exists and create it empty (or as a copy of ``template``)."""
    if not name.startswith("bench_"):
        raise ValueError(f"benchmarks only touch databases named bench_*, not {name!r}")
    with admin(pg_url) as conn:
        ident = sql.Identifier(name)
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))
        if template is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(ident))
        else:
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(ident, sql.Identifier(template))
            )


def drop_database(name: str, pg_url: str = PG_URL) -> None:
    if not name.startswith("bench_"):
        raise ValueError(f"benchmarks only touch databases named bench_*, not {name!r}")
    with admin(pg_url) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def migrated_database(name: str, pg_url: str = PG_URL, tree: Path = ROOT) -> None:
    """A fresh database with the schema of the project in ``tree``, vacuumed and analyzed.

    VACUUM ANALYZE right away, so autovacuum finds nothing to do in it during a measurement.
    """
    fresh_database(name, pg_url=pg_url)
    env = django_env(db_url(name, pg_url))
    subprocess.run(
        [PYTHON, "manage.py", "migrate", "-v0"], cwd=tree, env=env, check=True, timeout=120
    )
    with admin(pg_url, name) as conn:
        conn.execute("VACUUM ANALYZE")


def django_env(database_url: str, **extra: str) -> dict[str, str]:
    """The environment of a benchmarked Django process: our database, INFO logs, no WORKER_*."""
    drop = ("WORKER_", "DATABASE_URL", "LOG_LEVEL", "DJANGO_SETTINGS_MODULE")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DATABASE_URL=database_url,
        REDIS_URL=os.environ.get("REDIS_URL") or REDIS_URL,
        LOG_LEVEL="INFO",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


class Child:
    """A child process whose stdout+stderr lines are kept with their arrival time."""

    def __init__(
        self, args: Sequence[str], env: dict[str, str], *, label: str, cwd: Path = ROOT
    ) -> None:
        self.label = label
        self.lines: list[tuple[float, str]] = []  # (time.perf_counter(), line)
        self._changed = threading.Condition()
        self.spawned_at = time.perf_counter()
        self.popen = subprocess.Popen(
            list(args),
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        self._reader = threading.Thread(target=self._read, name=f"read-{label}", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            with self._changed:
                self.lines.append((time.perf_counter(), line.rstrip("\n")))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, text: str, timeout: float) -> float:
        """The arrival time of the first line containing ``text``; raises if none comes."""
        deadline = time.perf_counter() + timeout
        seen = 0
        with self._changed:
            while True:
                for at, line in self.lines[seen:]:
                    if text in line:
                        return at
                seen = len(self.lines)
                if self.popen.poll() is not None and not self._reader.is_alive():
                    raise RuntimeError(
                        f"{self.label} exited ({self.popen.returncode}) before {text!r}:\n"
                        + self.tail()
                    )
                left = deadline - time.perf_counter()
                if left <= 0:
                    raise TimeoutError(
                        f"{self.label}: no {text!r} within {timeout}s\n" + self.tail()
                    )
                self._changed.wait(min(left, 0.5))

    def lines_between(self, start: float, end: float) -> list[str]:
        with self._changed:
            return [line for at, line in self.lines if start <= at < end]

    def tail(self, n: int = 15) -> str:
        with self._changed:
            return "\n".join(line for _, line in self.lines[-n:])

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit code."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        self._reader.join(timeout=5)
        return self.popen.returncode


def worker_args() -> list[str]:
    return [PYTHON, "manage.py", "runworker"]


def cpu_seconds(pid: int) -> float:
    """User + system CPU of the process, all its threads included."""
    import psutil

    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def context_switches(pid: int) -> tuple[int, int]:
    """(voluntary, involuntary) context switches summed over every live thread of ``pid``.

    A thread sleeping in epoll/futex and woken counts one voluntary switch per wake-up.
    """
    voluntary = involuntary = 0
    for status in Path(f"/proc/{pid}/task").glob("*/status"):
        with contextlib.suppress(OSError):
            for line in status.read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches:"):
                    voluntary += int(line.split()[1])
                elif line.startswith("nonvoluntary_ctxt_switches:"):
                    involuntary += int(line.split()[1])
    return voluntary, involuntary


def thread_count(pid: int) -> int:
    return sum(1 for _ in Path(f"/proc/{pid}/task").iterdir())


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (``pct`` in 0..100); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, round(pct / 100 * len(ordered) + 0.4999999))
    return ordered[min(rank, len(ordered)) - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table with columns separated by `` | ``."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    out = []
    for n, row in enumerate(cells):
        out.append(" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            out.append("-+-".join("-" * w for w in widths))
    return "\n".join(out)


if __name__ == "__main__":
    print("bench/common.py holds helpers for the benchmarks; it measures nothing itself.")


def healthz(port: int) -> dict[str, Any]:
    """A worker's /healthz body."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
        return dict(json.loads(response.read()))


def wait_health(
    child: Child, port: int, ready: Callable[[dict[str, Any]], bool], what: str,
    timeout: float = 60.0,
) -> dict[str, Any]:  # fmt: skip
    """Poll the child's /healthz until ``ready(body)``; its body. (Another process: no event
    to wait on, so a 50 ms poll, only while a benchmark starts.)"""
    deadline = time.perf_counter() + timeout
    while True:
        if child.popen.poll() is not None:
            raise RuntimeError(f"{child.label} exited ({child.popen.returncode}):\n{child.tail()}")
        with contextlib.suppress(OSError, ValueError):
            if ready(health := healthz(port)):
                return health
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{child.label}: {what} not ready in {timeout} s\n{child.tail()}")
        time.sleep(0.05)
