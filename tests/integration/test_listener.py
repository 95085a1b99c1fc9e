"""The Listener against a real PostgreSQL: delivery, (re)connect ordering, failure, shutdown.

"Not delivered" is proven without sleeping: a marker NOTIFY is sent after the one that must not
arrive. PostgreSQL delivers a session's notifications in commit order, so once the marker is
here anything sent before it would be here too.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from types import SimpleNamespace
from typing import Any, Protocol

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from services import db
from services.listener import DISPATCH_CHUNK, Listener, validate_channel

# pytest-django creates the test database only for a run that selects a test marked so; these
# tests use their own connections, but `-k` picking only some of them must still find it.
pytestmark = pytest.mark.django_db
WAIT = 2.0  # seconds; every wait is for an event that normally comes within milliseconds


class Inbox:
    """An on_notify callback that keeps what it got and lets a test await the next one."""

    def __init__(self) -> None:
        self.payloads: list[str] = []
        self._queue: asyncio.Queue[str] = asyncio.Queue()

    def __call__(self, payload: str) -> None:
        self.payloads.append(payload)
        self._queue.put_nowait(payload)

    async def next(self) -> str:
        return await asyncio.wait_for(self._queue.get(), WAIT)


class Counter:
    """An on_connect callback that counts its calls."""

    def __init__(self, then: Callable[[], None] | None = None) -> None:
        self.count = 0
        self._then = then
        self._changed = asyncio.Event()

    def __call__(self) -> None:
        self.count += 1
        self._changed.set()
        if self._then is not None:
            self._then()

    async def reaches(self, count: int) -> None:
        async with asyncio.timeout(WAIT):
            while self.count < count:
                self._changed.clear()
                await self._changed.wait()


@dataclass
class Running:
    stopping: asyncio.Event
    task: asyncio.Task[None]


class StartListener(Protocol):
    def __call__(self, listener: Listener, *, wait_ready: bool = True) -> Awaitable[Running]: ...


@pytest.fixture
def app_name(django_db_setup: None) -> str:
    # Unique per test so pg_stat_activity finds this test's listener and nobody else's.
    return f"test-listener-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def listener(app_name: str) -> Listener:
    return Listener(
        lambda: db.conninfo(app_name), backoff_base=0.01, backoff_cap=0.05, rng=lambda: 0.5
    )


@pytest.fixture
async def start() -> AsyncIterator[StartListener]:
    started: list[Running] = []

    async def start_listener(listener: Listener, *, wait_ready: bool = True) -> Running:
        stopping = asyncio.Event()
        running = Running(stopping, asyncio.create_task(listener.run(stopping)))
        started.append(running)
        if wait_ready:
            await asyncio.wait_for(listener.ready.wait(), WAIT)
        return running

    yield start_listener
    for running in started:
        running.stopping.set()
        await asyncio.wait_for(asyncio.gather(running.task, return_exceptions=True), WAIT)


@pytest.fixture
async def notifier(django_db_setup: None) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    conn = await psycopg.AsyncConnection.connect(db.conninfo("test-notifier"), autocommit=True)
    yield conn
    await conn.close()


@pytest.fixture
def sync_notifier(django_db_setup: None) -> Iterator[psycopg.Connection[Any]]:
    """For sending from inside a (synchronous) on_connect callback."""
    with psycopg.connect(db.conninfo("test-sync-notifier"), autocommit=True) as conn:
        yield conn


async def notify(conn: psycopg.AsyncConnection[Any], channel: str, payload: str) -> None:
    await conn.execute("SELECT pg_notify(%s, %s)", [channel, payload])


def events(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [e for r in caplog.records if (e := getattr(r, "event", None))]


async def backend_pid(conn: psycopg.AsyncConnection[Any], app_name: str) -> int:
    cursor = await conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE application_name = %s", [app_name]
    )
    rows = await cursor.fetchall()
    assert len(rows) == 1, rows
    return int(rows[0][0])


# --- delivery -------------------------------------------------------------------------------


async def test_notify_reaches_the_subscriber_of_its_channel_only(
    listener: Listener, start: StartListener, notifier: psycopg.AsyncConnection[Any]
) -> None:
    alpha, beta = Inbox(), Inbox()
    listener.subscribe("alpha", alpha)
    listener.subscribe("beta", beta)
    await start(listener)

    await notify(notifier, "alpha", "a1")
    assert await alpha.next() == "a1"
    await notify(notifier, "beta", "b1")
    assert await beta.next() == "b1"

    assert (alpha.payloads, beta.payloads) == (["a1"], ["b1"])


async def test_two_subscribers_of_one_channel_both_get_each_notify(
    listener: Listener, start: StartListener, notifier: psycopg.AsyncConnection[Any]
) -> None:
    first, second = Inbox(), Inbox()
    listener.subscribe("alpha", first)
    listener.subscribe("alpha", second)
    await start(listener)

    await notify(notifier, "alpha", "both")

    assert (await first.next(), await second.next()) == ("both", "both")


async def test_a_burst_is_dispatched_in_order_in_chunks_that_let_other_work_run_between(
    listener: Listener, start: StartListener, notifier: psycopg.AsyncConnection[Any]
) -> None:
    inbox = Inbox()
    seen_by_other_work: list[int] = []

    def on_notify(payload: str) -> None:
        if not inbox.payloads:  # something else becomes ready as the burst starts
            asyncio.get_running_loop().call_soon(
                lambda: seen_by_other_work.append(len(inbox.payloads))
            )
        inbox(payload)

    listener.subscribe("alpha", on_notify)
    await start(listener)
    await notifier.execute(  # one transaction: all 1000 arrive together at its commit
        "SELECT pg_notify('alpha', n::text) FROM generate_series(1, 1000) AS n"
    )
    for _ in range(1000):
        await inbox.next()
    assert inbox.payloads == [str(n) for n in range(1, 1001)]
    assert seen_by_other_work and seen_by_other_work[0] <= DISPATCH_CHUNK


async def test_unsubscribe_stops_delivery_and_unlistens_after_the_last_one(
    listener: Listener, start: StartListener, notifier: psycopg.AsyncConnection[Any]
) -> None:
    leaving, staying, marker = Inbox(), Inbox(), Inbox()
    unsubscribe_leaving = listener.subscribe("alpha", leaving)
    unsubscribe_staying = listener.subscribe("alpha", staying)
    await start(listener)

    unsubscribe_leaving()
    unsubscribe_leaving()  # idempotent
    await notify(notifier, "alpha", "x")
    assert await staying.next() == "x"
    assert leaving.payloads == []

    unsubscribe_staying()
    # on_connect of a later subscription runs after the sync that also UNLISTENed alpha.
    marker_listening = Counter()
    listener.subscribe("marker", marker, on_connect=marker_listening)
    await marker_listening.reaches(1)
    assert listener.health()["channels"] == ["marker"]
    await notify(notifier, "alpha", "y")
    await notify(notifier, "marker", "m")
    assert await marker.next() == "m"
    assert (leaving.payloads, staying.payloads) == ([], ["x"])


async def test_notify_inside_an_open_transaction_arrives_only_on_commit(
    listener: Listener,
    start: StartListener,
    notifier: psycopg.AsyncConnection[Any],
    app_name: str,
) -> None:
    inbox = Inbox()
    listener.subscribe("alpha", inbox)
    await start(listener)

    async with await psycopg.AsyncConnection.connect(db.conninfo(f"{app_name}-tx")) as tx:
        await notify(tx, "alpha", "in-transaction")  # not autocommit: a transaction is open
        await notify(notifier, "alpha", "marker")
        assert await inbox.next() == "marker"
        assert inbox.payloads == ["marker"]

        await tx.commit()
        assert await inbox.next() == "in-transaction"


async def test_a_failing_callback_is_logged_and_later_deliveries_continue(
    listener: Listener,
    start: StartListener,
    notifier: psycopg.AsyncConnection[Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="services.listener")
    received = Inbox()

    def fails_on_boom(payload: str) -> None:
        received(payload)
        if payload == "boom":
            raise RuntimeError("subscriber bug")

    healthy = Inbox()
    listener.subscribe("alpha", fails_on_boom)
    listener.subscribe("alpha", healthy)
    await start(listener)

    await notify(notifier, "alpha", "boom")
    assert await healthy.next() == "boom"  # the failing subscriber did not stop the others
    await notify(notifier, "alpha", "after")
    assert await received.next() == "boom"
    assert await received.next() == "after"

    failures = [
        r for r in caplog.records if getattr(r, "event", None) == "listener.callback_failed"
    ]
    assert len(failures) == 1
    assert failures[0].exc_info is not None and failures[0].levelno == logging.ERROR
    assert listener.health()["state"] == "listening"


# --- (re)connect ordering -------------------------------------------------------------------


@pytest.mark.parametrize("subscribed", ["before_run", "while_listening"])
async def test_on_connect_runs_after_listen(
    listener: Listener,
    start: StartListener,
    sync_notifier: psycopg.Connection[Any],
    subscribed: str,
) -> None:
    # A NOTIFY committed from inside on_connect is delivered only if LISTEN already happened.
    inbox = Inbox()

    def send_from_on_connect() -> None:
        sync_notifier.execute("SELECT pg_notify('alpha', 'sent-from-on-connect')")

    on_connect = Counter(then=send_from_on_connect)
    if subscribed == "before_run":
        listener.subscribe("alpha", inbox, on_connect=on_connect)
        await start(listener)
    else:
        listener.subscribe("other", Inbox())
        await start(listener)
        listener.subscribe("alpha", inbox, on_connect=on_connect)

    assert await inbox.next() == "sent-from-on-connect"
    assert on_connect.count == 1


async def test_terminated_backend_reconnects_relistens_and_calls_on_connect_again(
    listener: Listener,
    start: StartListener,
    notifier: psycopg.AsyncConnection[Any],
    app_name: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="services.listener")
    inbox, on_connect = Inbox(), Counter()
    listener.subscribe("alpha", inbox, on_connect=on_connect)
    await start(listener)
    assert on_connect.count == 1
    first_pid = await backend_pid(notifier, app_name)

    await notifier.execute("SELECT pg_terminate_backend(%s)", [first_pid])
    await on_connect.reaches(2)

    await notify(notifier, "alpha", "after-reconnect")
    assert await inbox.next() == "after-reconnect"
    assert await backend_pid(notifier, app_name) != first_pid
    assert events(caplog) == [
        "listener.connected",
        "listener.disconnected",
        "listener.reconnect_scheduled",
        "listener.connected",
    ]
    disconnected, scheduled = caplog.records[1], caplog.records[2]
    assert disconnected.levelno == logging.WARNING
    assert scheduled.delay == 0.005  # type: ignore[attr-defined]  # rng 0.5 * base 0.01
    health = listener.health()
    assert (health["state"], health["reconnects"]) == ("listening", 1)
    assert health["last_error"] is not None


# --- health and shutdown --------------------------------------------------------------------


async def test_health_reports_listening_state(listener: Listener, start: StartListener) -> None:
    assert listener.health()["state"] == "stopped"
    listener.subscribe("beta", Inbox())
    listener.subscribe("alpha", Inbox())

    await start(listener)

    health = listener.health()
    since = datetime.fromisoformat(health.pop("listening_since"))
    assert since.tzinfo is not None
    assert health == {
        "state": "listening",
        "reconnects": 0,
        "last_error": None,
        "channels": ["alpha", "beta"],
    }


@pytest.mark.parametrize("how", ["stopping", "cancel"])
async def test_stop_returns_promptly_and_closes_the_connection(
    listener: Listener, start: StartListener, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    opened: list[psycopg.AsyncConnection[Any]] = []
    real_connect = psycopg.AsyncConnection.connect

    async def recording_connect(*args: Any, **kwargs: Any) -> psycopg.AsyncConnection[Any]:
        conn = await real_connect(*args, **kwargs)
        opened.append(conn)
        return conn

    monkeypatch.setattr(psycopg.AsyncConnection, "connect", staticmethod(recording_connect))
    listener.subscribe("alpha", Inbox())
    running = await start(listener)

    if how == "stopping":
        running.stopping.set()
        await asyncio.wait_for(running.task, 1.0)
    else:
        running.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(running.task, 1.0)

    assert len(opened) == 1 and opened[0].closed
    health = listener.health()
    assert (health["state"], health["channels"], health["listening_since"]) == ("stopped", [], None)
    assert not listener.ready.is_set()


async def test_stop_during_backoff_returns_promptly(
    start: StartListener, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="services.listener")
    backoff_chosen = asyncio.Event()

    def rng() -> float:
        backoff_chosen.set()
        return 1.0

    # Nothing listens on port 1: the connect is refused at once; the backoff would be 60 s.
    refused = "host=127.0.0.1 port=1 dbname=nothing user=nobody connect_timeout=2"
    listener = Listener(lambda: refused, backoff_base=60.0, backoff_cap=60.0, rng=rng)
    running = await start(listener, wait_ready=False)
    await asyncio.wait_for(backoff_chosen.wait(), WAIT)

    health = listener.health()
    assert (health["state"], health["listening_since"], health["reconnects"]) == (
        "backoff",
        None,
        0,
    )
    assert health["last_error"].startswith("OperationalError")
    assert events(caplog) == ["listener.connect_failed", "listener.reconnect_scheduled"]

    running.stopping.set()
    await asyncio.wait_for(running.task, 1.0)
    assert listener.health()["state"] == "stopped"


# --- channel names --------------------------------------------------------------------------


@pytest.mark.parametrize("channel", ["Alpha", "1alpha", "al-pha", "al pha", "", "a" * 64])
def test_unsafe_channel_names_are_refused(channel: str) -> None:
    with pytest.raises(ValueError, match="channel"):
        Listener(lambda: "").subscribe(channel, lambda payload: None)


@pytest.mark.parametrize("channel", ["alpha", "_x", "notifications_outbox_2", "a" * 63])
def test_identifier_safe_channel_names_are_accepted(channel: str) -> None:
    assert validate_channel(channel) == channel


# --- services.db.conninfo -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "keepalives"), [("db.example", True), ("/run/postgresql", False), ("", False)]
)
def test_conninfo_adds_keepalives_for_tcp_hosts_only(
    monkeypatch: pytest.MonkeyPatch, host: str, keepalives: bool
) -> None:
    options = {"application_name": "alarm-web", "isolation_level": 1, "sslmode": "prefer"}
    database = {
        "NAME": "app",
        "USER": "u",
        "PASSWORD": "",
        "HOST": host,
        "PORT": "",
        "OPTIONS": options,
    }
    # Only services.db sees this; overriding django's DATABASES would reach its connections.
    monkeypatch.setattr(db, "settings", SimpleNamespace(DATABASES={"default": database}))

    params = conninfo_to_dict(db.conninfo("alarm-worker-listener"))

    assert params.pop("application_name") == "alarm-worker-listener"
    assert (params.pop("connect_timeout"), params.pop("sslmode")) == ("5", "prefer")
    expected = {"dbname": "app", "user": "u"} | ({"host": host} if host else {})
    if keepalives:
        expected |= {k: str(v) for k, v in db.TCP_KEEPALIVES.items()}
    assert params == expected  # no isolation_level (Django-only), no empty password/port
