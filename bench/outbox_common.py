"""Helpers of the outbox benchmarks (``outbox_latency.py``, ``outbox_throughput.py``).

Not a benchmark: run directly it only says so and exits 0.

What is here:

* ``Sink``: a minimal HTTP/1.1 server on 127.0.0.1 (an ``asyncio.Protocol``, leaner than
  ``tests/fakes/provider_servers.py``, so that thousands of requests a second cost the
  benchmark's own process little). It answers every request ``200 {}`` and records, per
  ``Idempotency-Key``, ``time.perf_counter_ns()`` when the request's last byte was read. It runs
  in the benchmark's event loop, the same process and clock as the enqueuer.
* Four subjects, each in its own ``bench_*`` database and its own process: the outbox
  (``manage.py runworker --only outbox``, ``LOG_LEVEL=WARNING``, ``OUTBOX_ALLOW_LOOPBACK=true``,
  a webhook provider pointing at the sink), procrastinate 3 (``outbox_baselines.py
  procrastinate`` in ``bench/.venv-procrastinate``, created on demand), the 5 s polling loop
  (``outbox_baselines.py poll``) and the bare NOTIFY loop, the floor (``outbox_baselines.py
  notify-loop``). Each enqueues with plain SQL over the benchmark's own
  autocommit psycopg connection: ``enqueue_one`` (one INSERT) and ``enqueue_many`` (one
  INSERT ... SELECT FROM generate_series), and answers ``unfinished`` (rows not yet done).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg

from bench import common

BASELINES = str(Path(__file__).resolve().parent / "outbox_baselines.py")
PROCRASTINATE_VENV = common.ROOT / "bench" / ".venv-procrastinate"
PROCRASTINATE_REQUIREMENTS = ["procrastinate==3.*", "psycopg[binary]", "aiohttp"]
POLL_INTERVAL = 5.0

# --- the sink --------------------------------------------------------------------------------

_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


class _SinkProtocol(asyncio.Protocol):
    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.sink.connections += 1

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter_ns()
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            length, key = 0, None
            for line in self.buffer[:end].split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"idempotency-key":
                    key = value.strip().decode()
                elif name == b"transfer-encoding":
                    raise RuntimeError("the sink does not read chunked bodies")
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length :]
            self.sink.record(key, now)
            assert self.transport is not None
            self.transport.write(_RESPONSE)


class Sink:
    """Records arrival times by ``Idempotency-Key``; wakes waiters per key or per count."""

    def __init__(self) -> None:
        self.url = ""
        self.arrivals: dict[str, int] = {}
        self.repeats = 0  # requests whose key had arrived before (at-least-once repeats)
        self.unkeyed = 0
        self.connections = 0  # TCP connections accepted (keep-alive reuses them)
        self._expected: dict[str, asyncio.Future[int]] = {}
        self._count_goal = 0
        self._count_reached: asyncio.Future[None] | None = None
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _SinkProtocol(self), "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def record(self, key: str | None, at_ns: int) -> None:
        if key is None:
            self.unkeyed += 1
            return
        if key in self.arrivals:
            self.repeats += 1
            return
        self.arrivals[key] = at_ns
        waiter = self._expected.pop(key, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(at_ns)
        if (
            self._count_reached is not None
            and len(self.arrivals) >= self._count_goal
            and not self._count_reached.done()
        ):
            self._count_reached.set_result(None)

    def expect(self, key: str) -> asyncio.Future[int]:
        """A future of ``key``'s arrival time (ns); call it before enqueueing ``key``."""
        waiter: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        if key in self.arrivals:
            waiter.set_result(self.arrivals[key])
        else:
            self._expected[key] = waiter
        return waiter

    def forget(self, key: str) -> None:
        self._expected.pop(key, None)

    async def wait_count(self, count: int, timeout: float) -> bool:  # noqa: ASYNC109
        """True once ``count`` distinct keys arrived in all; False after ``timeout`` s."""
        if len(self.arrivals) >= count:
            return True
        self._count_goal = count
        self._count_reached = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait_for(self._count_reached, timeout)
        except TimeoutError:
            return False
        finally:
            self._count_reached = None
        return True


# --- subjects --------------------------------------------------------------------------------


class Unavailable(RuntimeError):
    """A subject that cannot run here; its column says n/a with this reason."""


INSERT_PROVIDER = """
INSERT INTO notifications_notificationprovider (name, type, enabled, config, created_at, updated_at)
VALUES ('bench-sink', 'webhook', true, %s, now(), now()) RETURNING id
"""
INSERT_DELIVERY = """
INSERT INTO notifications_notificationdelivery
    (provider_id, title, message, data, status, attempts, max_attempts, next_attempt_at,
     locked_by, last_error_code, last_error_message, idempotency_key, created_at, updated_at)
VALUES (%(provider)s, 'bench', 'bench message', '{}', 'pending', 0, 5, now(),
        '', '', '', %(key)s, now(), now())
"""
INSERT_DELIVERIES = """
INSERT INTO notifications_notificationdelivery
    (provider_id, title, message, data, status, attempts, max_attempts, next_attempt_at,
     locked_by, last_error_code, last_error_message, idempotency_key, created_at, updated_at)
SELECT %(provider)s, 'bench', 'bench message', '{}', 'pending', 0, 5, now(),
       '', '', '', %(prefix)s || i, now(), now()
FROM generate_series(1, %(count)s) AS i
"""
UNFINISHED_DELIVERIES = """
SELECT count(*) FROM notifications_notificationdelivery WHERE status IN ('pending', 'sending')
"""
DELIVERY_STATUSES = """
SELECT status, last_error_code, count(*) FROM notifications_notificationdelivery
GROUP BY 1, 2 ORDER BY 1, 2
"""


class Subject:
    """One system under test: its database, its process, how to enqueue to it."""

    key = ""
    label = ""

    def __init__(self, sink: Sink, template: str) -> None:
        self.sink = sink
        self.template = template  # a migrated database to copy
        self.dbname = common.run_name(f"bench_outbox_{self.key}")
        self.child: common.Child | None = None
        self.conn: psycopg.AsyncConnection[Any] | None = None

    @property
    def pid(self) -> int:
        assert self.child is not None
        return self.child.pid

    async def start(self) -> None:
        await asyncio.to_thread(self.prepare)
        self.conn = await psycopg.AsyncConnection.connect(
            common.db_url(self.dbname), autocommit=True, application_name="bench-enqueuer"
        )
        await asyncio.to_thread(self.spawn)

    def prepare(self) -> None:
        raise NotImplementedError

    def spawn(self) -> None:
        raise NotImplementedError

    async def enqueue_one(self, key: str) -> None:
        raise NotImplementedError

    async def enqueue_many(self, prefix: str, count: int) -> None:
        raise NotImplementedError

    async def unfinished(self) -> int:
        raise NotImplementedError

    async def statuses(self) -> str:
        return ""

    async def claim_times(self, prefix: str) -> dict[str, float]:
        """Epoch seconds at which each delivery keyed ``prefix...`` was claimed (last attempt)."""
        assert self.conn is not None
        cursor = await self.conn.execute(self.CLAIM_TIMES, (prefix + "%",))
        return {key: at.timestamp() for key, at in await cursor.fetchall() if at is not None}

    CLAIM_TIMES = """
    SELECT idempotency_key, last_attempt_at FROM notifications_notificationdelivery
    WHERE idempotency_key LIKE %s
    """

    async def batches(self, prefix: str) -> tuple[int, int] | None:
        """(claims, result writes) that handled the deliveries keyed ``prefix...``.

        Each claim stamps its rows' ``last_attempt_at`` and each result write their
        ``updated_at`` with one time, so distinct values count statements that touched them.
        """
        assert self.conn is not None
        cursor = await self.conn.execute(
            "SELECT count(DISTINCT last_attempt_at), count(DISTINCT updated_at)"
            " FROM notifications_notificationdelivery WHERE idempotency_key LIKE %s",
            (prefix + "%",),
        )
        row = await cursor.fetchone()
        return (int(row[0]), int(row[1])) if row else None

    async def stop(self, keep_database: bool = False) -> None:
        if self.conn is not None:
            await self.conn.close()
        if self.child is not None:
            await asyncio.to_thread(self.child.stop)
        if not keep_database:
            await asyncio.to_thread(common.drop_database, self.dbname)

    async def _count(self, query: str) -> int:
        assert self.conn is not None
        cursor = await self.conn.execute(query)
        row = await cursor.fetchone()
        return int(row[0]) if row else 0


class _OutboxTable(Subject):
    """Subjects that read the project's outbox table (a copy of the migrated template)."""

    provider_id = 0

    def prepare(self) -> None:
        if self.template != self.dbname:
            common.fresh_database(self.dbname, template=self.template)
        with common.admin(dbname=self.dbname) as conn:
            config = json.dumps({"url": f"{self.sink.url}/webhook"})
            row = conn.execute(INSERT_PROVIDER, (config,)).fetchone()
            assert row is not None
            self.provider_id = int(row[0])

    async def enqueue_one(self, key: str) -> None:
        assert self.conn is not None
        await self.conn.execute(INSERT_DELIVERY, {"provider": self.provider_id, "key": key})

    async def enqueue_many(self, prefix: str, count: int) -> None:
        assert self.conn is not None
        params = {"provider": self.provider_id, "prefix": prefix, "count": count}
        await self.conn.execute(INSERT_DELIVERIES, params)

    async def unfinished(self) -> int:
        return await self._count(UNFINISHED_DELIVERIES)

    async def statuses(self) -> str:
        assert self.conn is not None
        cursor = await self.conn.execute(DELIVERY_STATUSES)
        rows = await cursor.fetchall()
        return ", ".join(f"{s}{'/' + c if c else ''}: {n}" for s, c, n in rows)


class OutboxWorker(_OutboxTable):
    """``manage.py runworker --only outbox`` of this checkout, or of another (``tree``: the
    code before a change, say), each on a database migrated by its own code."""

    key = "worker"
    label = "outbox (runworker)"

    def __init__(
        self,
        sink: Sink,
        template: str,
        extra_env: dict[str, str] | None = None,
        tree: Path | None = None,
    ) -> None:
        super().__init__(sink, template)
        self.extra_env = extra_env or {}
        self.port = 0
        self.tree = tree
        if tree is not None:
            self.key = "compared"
            self.label = f"outbox of {tree}"
            self.dbname = common.run_name("bench_outbox_compared")

    def prepare(self) -> None:
        if self.tree is not None:  # its own schema, not a copy of this checkout's
            common.migrated_database(self.dbname, tree=self.tree)
            self.template = self.dbname
        super().prepare()

    def spawn(self) -> None:
        self.port = common.free_port()
        env = outbox_env(self.dbname, self.port, **self.extra_env)
        args = [*common.worker_args(), "--only", "outbox"]
        tree = self.tree or common.ROOT
        self.child = common.Child(args, env, label="runworker", cwd=tree)
        wait_outbox_ready(self.child, self.port, timeout=60)


class PollingLoop(_OutboxTable):
    key = "poll"
    label = f"{POLL_INTERVAL:g} s polling loop"

    def spawn(self) -> None:
        args = [common.PYTHON, BASELINES, "poll", "--db-url", common.db_url(self.dbname),
                "--interval", str(POLL_INTERVAL)]  # fmt: skip
        self.child = common.Child(args, plain_env(), label="poller")
        self.child.wait_for("poller ready", timeout=30)


class NotifyLoop(_OutboxTable):
    key = "floor"
    label = "bare NOTIFY loop (floor)"

    def spawn(self) -> None:
        args = [common.PYTHON, BASELINES, "notify-loop", "--db-url", common.db_url(self.dbname),
                "--interval", str(POLL_INTERVAL)]  # fmt: skip
        self.child = common.Child(args, plain_env(), label="notify-loop")
        self.child.wait_for("poller ready", timeout=30)


class Procrastinate(Subject):
    key = "procrastinate"
    label = "procrastinate 3"

    def __init__(self, sink: Sink, template: str, concurrency: int) -> None:
        super().__init__(sink, template)
        self.concurrency = concurrency
        self.python = ""

    def prepare(self) -> None:
        self.python = procrastinate_python()
        common.fresh_database(self.dbname)
        subprocess.run(
            [self.python, BASELINES, "procrastinate-schema", "--db-url",
             common.db_url(self.dbname)],
            check=True, timeout=120, capture_output=True,
        )  # fmt: skip

    def spawn(self) -> None:
        args = [self.python, BASELINES, "procrastinate", "--db-url", common.db_url(self.dbname),
                "--sink", f"{self.sink.url}/procrastinate",
                "--concurrency", str(self.concurrency)]  # fmt: skip
        self.child = common.Child(args, plain_env(), label="procrastinate")
        self.child.wait_for("procrastinate worker ready", timeout=60)
        ready = [line for _, line in self.child.lines if "procrastinate worker ready" in line]
        self.label = f"procrastinate {ready[0].split()[-1]} (c={self.concurrency})"

    async def enqueue_one(self, key: str) -> None:
        assert self.conn is not None
        await self.conn.execute(
            "INSERT INTO procrastinate_jobs (queue_name, task_name, args)"
            " VALUES ('default', 'post', jsonb_build_object('key', %s::text))",
            (key,),
        )

    async def enqueue_many(self, prefix: str, count: int) -> None:
        assert self.conn is not None
        await self.conn.execute(
            "INSERT INTO procrastinate_jobs (queue_name, task_name, args)"
            " SELECT 'default', 'post', jsonb_build_object('key', %s || i)"
            " FROM generate_series(1, %s) AS i",
            (prefix, count),
        )

    async def unfinished(self) -> int:
        return await self._count(
            "SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')"
        )

    async def batches(self, prefix: str) -> tuple[int, int] | None:
        return None  # one fetch and one finish per job, by design

    CLAIM_TIMES = """
    SELECT j.args ->> 'key', max(e.at) FROM procrastinate_jobs AS j
    JOIN procrastinate_events AS e ON e.job_id = j.id AND e.type = 'started'
    WHERE j.args ->> 'key' LIKE %s GROUP BY 1
    """

    async def statuses(self) -> str:
        assert self.conn is not None
        cursor = await self.conn.execute(
            "SELECT status, count(*) FROM procrastinate_jobs GROUP BY 1 ORDER BY 1"
        )
        return ", ".join(f"{s}: {n}" for s, n in await cursor.fetchall())


def plain_env() -> dict[str, str]:
    """The environment of a baseline process: ours, less Django's and the worker's settings."""
    drop = ("WORKER_", "DATABASE_URL", "DJANGO_SETTINGS_MODULE", "VIRTUAL_ENV", "PYTHONPATH")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def procrastinate_python() -> str:
    """The python of ``bench/.venv-procrastinate``, created and filled on first use.

    Raises Unavailable (with the reason) when it cannot be created or installed.
    """
    python = PROCRASTINATE_VENV / "bin" / "python"
    probe = [str(python), "-c", "import procrastinate, aiohttp, psycopg"]
    if python.exists() and subprocess.run(probe, capture_output=True, timeout=60).returncode == 0:
        return str(python)
    print(f"creating {PROCRASTINATE_VENV} (procrastinate, for the benchmark only) ...", flush=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(PROCRASTINATE_VENV)],
                       check=True, capture_output=True, timeout=120)  # fmt: skip
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
             *PROCRASTINATE_REQUIREMENTS],
            check=True, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        subprocess.run(probe, check=True, capture_output=True, timeout=60)
    except subprocess.CalledProcessError as exc:
        tail = ((exc.stderr or "") if isinstance(exc.stderr, str) else "").strip()
        reason = tail.splitlines()[-1] if tail else f"exit {exc.returncode}"
        raise Unavailable(f"cannot install procrastinate: {reason[:120]}") from exc
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Unavailable(f"cannot install procrastinate: {exc}") from exc
    return str(python)


# --- the outbox worker -----------------------------------------------------------------------


def outbox_env(dbname: str, port: int, **extra: str) -> dict[str, str]:
    """A benchmarked outbox worker's environment: WARNING logs (INFO logs every delivery)."""
    return common.django_env(
        common.db_url(dbname),
        WORKER_HEALTH_PORT=str(port),
        LOG_LEVEL="WARNING",
        OUTBOX_ALLOW_LOOPBACK="true",
        **extra,
    )


def outbox_ready(health: dict[str, Any]) -> bool:
    components = health.get("components", {})
    listener, outbox = components.get("listener", {}), components.get("outbox", {})
    return (
        listener.get("state") == "listening"
        and "notifications_outbox" in listener.get("channels", ())
        and outbox.get("state") == "running"
        and outbox.get("drains", 0) >= 1
    )


def wait_outbox_ready(child: common.Child, port: int, timeout: float) -> dict[str, Any]:
    """Poll /healthz until the listener LISTENs and the outbox has drained once."""
    return common.wait_health(child, port, outbox_ready, "outbox", timeout)


def migrated_template() -> str:
    """A migrated database to copy for each subject (drop it when done)."""
    name = common.run_name("bench_outbox_template")
    common.migrated_database(name)
    return name


async def warm_up(subject: Subject, sink: Sink, count: int = 20, patience: float = 15.0) -> int:
    """Send ``count`` deliveries one by one, unmeasured; returns how many arrived."""
    arrived = 0
    for i in range(count):
        key = f"{subject.key}-warm-{i}"
        waiter = sink.expect(key)
        await subject.enqueue_one(key)
        try:
            await asyncio.wait_for(waiter, patience)
            arrived += 1
        except TimeoutError:
            sink.forget(key)
    return arrived


# --- the machine's state ---------------------------------------------------------------------


def _proc_stat() -> list[int]:
    with open("/proc/stat") as stat:
        return [int(v) for v in stat.readline().split()[1:]]


def _own_cpu_seconds() -> float:
    """CPU of this process, its children, PostgreSQL's shared processes and its backends that
    serve this run's databases (named ``bench_..._<our pid>`` in their process titles)."""
    import psutil

    me = psutil.Process()
    tag = f"_{os.getpid()} "
    total = 0.0
    procs = [me, *me.children(recursive=True)]
    for proc in psutil.process_iter(["cmdline"]):
        title = " ".join(proc.info["cmdline"] or ())
        client = "(" in title or "[local]" in title
        if title.startswith("postgres:") and (tag in title or not client):
            procs.append(proc)  # our backends, and checkpointer, walwriter, ... (no client)
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            total += times.user + times.system
    return total


class MachineLoad:
    """CPU of the whole machine (all cores) between creation and ``finish()``, from /proc/stat.

    busy: user+nice+system+irq+softirq, % of all cores' time; steal: time the hypervisor gave
    to other guests; others: busy less this run's own processes (this one, its children, the
    PostgreSQL backends of its databases and PostgreSQL's shared processes), i.e. whatever
    else ran beside (tests, other benchmarks), an estimate.
    """

    def __init__(self) -> None:
        self.start = _proc_stat()
        self.own = _own_cpu_seconds()
        self.wall = time.perf_counter()

    def finish(self) -> dict[str, float]:
        delta = [b - a for a, b in zip(self.start, _proc_stat(), strict=False)]
        own = _own_cpu_seconds() - self.own
        wall = time.perf_counter() - self.wall
        total = sum(delta[:8]) or 1
        user, nice, system, _idle, _iowait, irq, softirq, steal = delta[:8]
        busy = 100 * (user + nice + system + irq + softirq) / total
        own_pct = 100 * own / (wall * (os.cpu_count() or 1))
        return {"busy": busy, "steal": 100 * steal / total, "others": max(0.0, busy - own_pct)}


def commit_probe(count: int = 200) -> tuple[float, float]:
    """(p50, p99) ms of an autocommit transaction that writes a commit record (txid_current)."""
    times: list[float] = []
    with common.admin() as conn:
        for _ in range(count):
            start = time.perf_counter()
            conn.execute("SELECT txid_current()")
            times.append((time.perf_counter() - start) * 1000)
    return common.percentile(times, 50), common.percentile(times, 99)


def machine_line() -> str:
    p50, p99 = commit_probe()
    return (f"machine now: load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} cores, "
            f"commit round trip p50 {p50:.2f} ms, p99 {p99:.2f} ms")  # fmt: skip


def backend_cpu_seconds(dbname: str) -> float:
    """CPU of the PostgreSQL backends connected to ``dbname`` now (their process titles name
    the database): the subject's own connections and the benchmark's enqueuer."""
    import psutil

    total = 0.0
    for proc in psutil.process_iter(["cmdline"]):
        title = " ".join(proc.info["cmdline"] or ())
        if title.startswith("postgres:") and f" {dbname} " in f"{title} ":
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                total += times.user + times.system
    return total


# --- running the subjects ----------------------------------------------------------------------


def make_subjects(
    sink: Sink, template: str, args: argparse.Namespace, worker_env: dict[str, str] | None = None
) -> dict[str, Subject]:
    """Every subject of ``--subjects``, in table order; ``--compare`` adds another checkout."""
    subjects: dict[str, Subject] = {"worker": OutboxWorker(sink, template, worker_env)}
    if args.compare is not None:
        subjects["compared"] = OutboxWorker(sink, template, worker_env, tree=args.compare)
    subjects.update(
        floor=NotifyLoop(sink, template),
        procrastinate=Procrastinate(sink, template, args.procrastinate_concurrency),
        poll=PollingLoop(sink, template),
    )
    return {name: s for name, s in subjects.items() if name in args.subjects | {"compared"}}


def add_subject_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--procrastinate-concurrency", type=int, default=10)
    parser.add_argument("--subjects", default="worker,floor,procrastinate,poll",
                        help="comma-separated: worker, floor, procrastinate, poll")  # fmt: skip
    parser.add_argument("--compare", type=Path, default=None, metavar="DIR",
                        help="also measure the outbox of the checkout in DIR (its own schema), "
                             "e.g. an export of the commit before a change")  # fmt: skip
    parser.add_argument("--keep-databases", action="store_true")


def subject_names(text: str) -> set[str]:
    return {name.strip() for name in text.split(",") if name.strip()}


async def run_subjects(
    args: argparse.Namespace,
    measure: Callable[[Subject, Sink], Awaitable[dict[str, Any]]],
    report: Callable[[dict[str, dict[str, Any]]], None],
    worker_env: dict[str, str] | None = None,
) -> None:
    """Measure each subject in turn (each started and stopped around its ``measure``), then
    ``report`` every result; databases are dropped unless ``--keep-databases``."""
    print(await asyncio.to_thread(machine_line), flush=True)
    sink = Sink()
    await sink.start()
    template = await asyncio.to_thread(migrated_template)
    results: dict[str, dict[str, Any]] = {}
    try:
        for name, subject in make_subjects(sink, template, args, worker_env).items():
            try:
                print(f"[{subject.key}] starting ...", flush=True)
                await subject.start()
                results[name] = await measure(subject, sink)
            except Unavailable as exc:
                print(f"[{name}] n/a: {exc}", flush=True)
                results[name] = {"label": subject.label, "unavailable": str(exc)}
            except Exception as exc:
                tail = subject.child.tail() if subject.child else ""
                print(f"[{name}] failed: {exc!r}\n{tail}", flush=True)
                results[name] = {"label": subject.label, "error": type(exc).__name__}
            finally:
                await subject.stop(args.keep_databases)
        if sink.repeats or sink.unkeyed:
            print(f"sink: {sink.repeats} repeated keys, {sink.unkeyed} requests without a key")
        report(results)
        print(await asyncio.to_thread(machine_line))
    finally:
        try:
            await sink.close()
        finally:
            if not args.keep_databases:
                await asyncio.to_thread(common.drop_database, template)


# --- figures ---------------------------------------------------------------------------------


def ms(value: float) -> str:
    if value != value:  # NaN
        return "-"
    if value >= 1000:
        return f"{value / 1000:.2f} s"
    return f"{value:.2f}"


def cell(results: dict[str, Any] | None, fmt: Callable[[dict[str, Any]], str]) -> str:
    if results is None:
        return "-"
    if "unavailable" in results:
        return f"n/a ({results['unavailable']})"
    if "error" in results:
        return f"error ({results['error']})"
    return fmt(results)


if __name__ == "__main__":
    print("bench/outbox_common.py holds helpers of the outbox benchmarks; it measures nothing.")
