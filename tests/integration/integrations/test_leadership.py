"""Leadership between workers: one PostgreSQL advisory lock, a standby blocked on it."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import psycopg
import pytest

from services import db
from services.integrations.leadership import APPLICATION_PREFIX, Leadership, Term

pytestmark = pytest.mark.django_db(transaction=True)
TIMEOUT = 10.0


class Candidate:
    def __init__(self, worker_id: str, key: int) -> None:
        self.leadership = Leadership(worker_id, key=key, backoff_base=0.05, backoff_cap=0.2)
        self.stopping = asyncio.Event()
        self.task = asyncio.create_task(self.leadership.run(self.stopping))

    async def state(self, state: str) -> None:
        async with asyncio.timeout(TIMEOUT):
            while self.leadership.state != state:
                await self.leadership.changed.wait()

    async def term(self) -> Term:
        async with asyncio.timeout(TIMEOUT):
            term = await self.leadership.wait_term(self.stopping)
        assert term is not None
        return term

    async def stop(self) -> None:
        self.stopping.set()
        async with asyncio.timeout(TIMEOUT):
            await self.task


@pytest.fixture
async def candidates() -> AsyncIterator[list[Candidate]]:
    made: list[Candidate] = []
    yield made
    for candidate in made:
        await candidate.stop()


@pytest.fixture
def key() -> int:
    """A lock of this test alone (others may run workers against the same database)."""
    return secrets.randbits(62)


async def test_one_leads_the_other_waits_and_takes_over_when_it_stops(
    candidates: list[Candidate], key: int
) -> None:
    a = Candidate("worker-a", key)
    candidates.append(a)
    first = await a.term()
    b = Candidate("worker-b", key)
    candidates.append(b)
    await b.state("standby")
    assert not b.leadership.leading and b.leadership.health()["holder"] == "worker-a"
    assert a.leadership.health()["leader"] is True and a.leadership.health()["holder"] is None
    await a.stop()
    assert first.ended.is_set()
    await b.term()
    assert b.leadership.health()["leader"] is True and not a.leadership.leading


def terminate(application_name: str) -> int:
    with psycopg.connect(db.conninfo("test-terminator"), autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = %s",
            (application_name,),
        ).fetchone()
    return int(row[0]) if row else 0


async def test_losing_the_lock_connection_ends_the_term_at_once(
    candidates: list[Candidate], key: int
) -> None:
    a = Candidate("worker-a", key)
    candidates.append(a)
    term = await a.term()
    b = Candidate("worker-b", key)
    candidates.append(b)
    await b.state("standby")
    assert await asyncio.to_thread(terminate, APPLICATION_PREFIX + "worker-a") == 1
    async with asyncio.timeout(TIMEOUT):
        await term.ended.wait()
    assert not a.leadership.leading
    await b.term()  # the server released the lock with the session
    await a.state("standby")  # a reconnected and waits behind b now
    assert a.leadership.health()["holder"] == "worker-b"
    assert a.leadership.health()["terms"] == 1 and a.leadership.health()["last_error"]


async def test_a_standby_that_stops_while_waiting_leaves_no_waiter_behind(
    candidates: list[Candidate], key: int
) -> None:
    a = Candidate("worker-a", key)
    candidates.append(a)
    await a.term()
    b = Candidate("worker-b", key)
    await b.state("standby")
    await b.stop()
    c = Candidate("worker-c", key)
    candidates.append(c)
    await c.state("standby")
    await a.stop()
    await c.term()  # c, not a leftover backend of b, got the lock
    assert c.leadership.leading
