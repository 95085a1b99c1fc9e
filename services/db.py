"""libpq connection strings for connections the worker opens itself, outside the ORM.

The ORM's connections come and go with CONN_MAX_AGE; a LISTEN connection lives for the whole
process, so it must notice a dead peer on its own: a silent half-open TCP connection otherwise
takes Linux ~11 minutes to report, during which no NOTIFY arrives.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from psycopg.conninfo import make_conninfo

# A dead peer is noticed in ~30 s: probes after 10 s idle, every 5 s, 3 misses; and
# tcp_user_timeout bounds unacknowledged sends. libpq ignores all of these on unix sockets.
TCP_KEEPALIVES: dict[str, int] = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 30000,
}
CONNECT_TIMEOUT = 5

# DATABASES OPTIONS keys that Django's backend consumes itself; libpq would reject them.
_DJANGO_ONLY_OPTIONS = frozenset(
    {"assume_role", "context", "cursor_factory", "isolation_level", "pool", "server_side_binding"}
)


def conninfo(application_name: str) -> str:
    """A conninfo for ``DATABASES["default"]``, named ``application_name`` in pg_stat_activity.

    Precedence, lowest first: our keepalive and timeout defaults, OPTIONS, the NAME/USER/...
    fields, then ``application_name`` (so each of our connections can be told apart).
    """
    database = settings.DATABASES["default"]
    host = str(database.get("HOST") or "")
    params: dict[str, Any] = {"connect_timeout": CONNECT_TIMEOUT}
    # An empty host means libpq's default unix socket; "/dir" and "@abstract" are sockets too.
    if host and not host.startswith(("/", "@")):
        params.update(TCP_KEEPALIVES)
    options = database.get("OPTIONS") or {}
    params.update({k: v for k, v in options.items() if k not in _DJANGO_ONLY_OPTIONS})
    fields = {
        "dbname": database.get("NAME"),
        "user": database.get("USER"),
        "password": database.get("PASSWORD"),
        "host": host,
        "port": str(database.get("PORT") or ""),
    }
    # Empty strings mean "libpq default" in Django's settings, so leave them out.
    params.update({k: v for k, v in fields.items() if v})
    params["application_name"] = application_name
    return make_conninfo(**params)


def session_settings(*, synchronous_commit: bool = True) -> str:
    """SET statements for a worker connection that runs the same few statements all day.

    Each statement is planned once per connection and never again (planning the outbox's
    claim cost ~0.7 ms, the alarm timers' ~1.5 ms: more than running them; without this,
    PostgreSQL kept choosing custom plans, re-planned at every execution). A plan made while a
    table looked empty (a fresh install; a server with autovacuum off never re-plans) must
    still be right when the table holds months of history, so our statements reach rows
    through an index by construction and sequential scans are off here: a generic plan made
    on an empty table without that took 1.7 s per outbox claim on 200,000 rows, with it 3 ms.
    JIT never pays for statements of a millisecond. SET after connecting rather than startup
    options: connection poolers (PgBouncer) refuse unknown startup parameters.
    ``synchronous_commit=False``: commits do not wait for the WAL flush (a PostgreSQL crash
    may forget the last moment's commits).
    """
    settings = ["plan_cache_mode = force_generic_plan", "enable_seqscan = off", "jit = off"]
    if not synchronous_commit:
        settings.append("synchronous_commit = off")
    return "; ".join(f"SET {setting}" for setting in settings)
