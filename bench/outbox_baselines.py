"""The baselines' processes for ``outbox_latency.py`` and ``outbox_throughput.py``.

Not a benchmark: run with no arguments (``make bench``) it only says so and exits 0. Needs
nothing but psycopg and aiohttp, so the procrastinate virtualenv can run it too.

``poll --db-url URL``: the old way, a polling loop. Every ``--interval`` (5) seconds it claims
(one UPDATE ... RETURNING, ``FOR UPDATE SKIP LOCKED``) every due pending row of
``notifications_notificationdelivery`` with its provider's URL, POSTs each (at most
``--concurrency`` at once, one aiohttp session, JSON body and ``Idempotency-Key`` like the
webhook provider), then marks those answered 2xx ``sent`` in one UPDATE. Prints ``poller ready``
once connected.

``notify-loop --db-url URL``: the same loop with no bookkeeping, woken by NOTIFY: a second
connection LISTENs on ``notifications_outbox`` (psycopg's ``notifies()``); the loop clears its
wake flag before each claim of at most ``--batch`` (50) rows and claims again at once after a
full or non-empty batch, else waits for a NOTIFY (or ``--interval`` s). The physical floor of
LISTEN/NOTIFY + SKIP LOCKED + one HTTP POST on the machine, measured in the same run.

``procrastinate --db-url URL --sink URL``: a procrastinate 3 worker (``--concurrency`` job
slots, LISTEN/NOTIFY plus its own 5 s fallback poll) with one async task, ``post(key)``, that
POSTs the same request to the sink over a shared aiohttp session. Prints ``procrastinate
worker ready <version>`` right before the worker starts. ``procrastinate-schema --db-url URL``
applies procrastinate's schema to that (empty) database.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import time
from typing import Any

# Claim every due row (the floor loop: at most --batch), POST, then mark the answered ones sent.
CLAIM = """
UPDATE notifications_notificationdelivery AS d
SET status = 'sending', attempts = d.attempts + 1, last_attempt_at = now(), updated_at = now()
FROM notifications_notificationprovider AS p
WHERE p.id = d.provider_id AND d.id IN (
    SELECT id FROM notifications_notificationdelivery
    WHERE status = 'pending' AND next_attempt_at <= now()
    ORDER BY next_attempt_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED
)
RETURNING d.id, d.idempotency_key, d.title, d.message, d.data, p.config ->> 'url'
"""
MARK_SENT = """
UPDATE notifications_notificationdelivery
SET status = 'sent', sent_at = now(), updated_at = now()
WHERE id = ANY(%s)
"""


async def post(session: Any, url: str, key: str, body: dict[str, Any]) -> bool:
    async with session.post(url, json=body, headers={"Idempotency-Key": key}) as response:
        await response.read()
        return 200 <= response.status < 300


# --- the 5 s polling loop and the bare NOTIFY loop ------------------------------------------


async def run_poller(
    db_url: str, interval: float, concurrency: int, *, listen: bool, batch: int
) -> None:
    """Poll every ``interval`` s; with ``listen``, also wake on NOTIFY and claim ``batch``."""
    import aiohttp
    import psycopg

    stop, wake = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    limit = asyncio.Semaphore(concurrency)
    async with (
        await psycopg.AsyncConnection.connect(
            db_url, autocommit=True, application_name="bench-poller"
        ) as conn,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session,
    ):

        async def send(row: tuple[Any, ...]) -> int | None:
            pk, key, title, message, data, url = row
            body = {"title": title, "message": message, "data": data,
                    "idempotency_key": key, "delivery_id": pk}  # fmt: skip
            async with limit:
                try:
                    return pk if await post(session, url, key, body) else None
                except aiohttp.ClientError:
                    return None

        listener = asyncio.create_task(listen_for(db_url, wake)) if listen else None
        if listener is not None:
            await wake.wait()  # LISTEN is in place
        print("poller ready", flush=True)
        next_poll = time.monotonic()
        while not stop.is_set():
            wake.clear()  # before the query: a NOTIFY during it wakes us again
            cursor = await conn.execute(CLAIM, {"limit": batch if listen else None})
            rows = await cursor.fetchall()
            if rows:
                sent = [pk for pk in await asyncio.gather(*map(send, rows)) if pk is not None]
                await conn.execute(MARK_SENT, (sent,))
                if listen:
                    continue
            if listen:
                delay = interval  # a fallback poll: a lost wake-up shows as a 5 s wait
            else:
                next_poll = max(next_poll + interval, time.monotonic())  # no catch-up bursts
                delay = next_poll - time.monotonic()
            waiters = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())}
            _, pending = await asyncio.wait(
                waiters, timeout=delay, return_when=asyncio.FIRST_COMPLETED
            )
            for waiter in pending:
                waiter.cancel()
        if listener is not None:
            listener.cancel()


async def listen_for(db_url: str, wake: asyncio.Event) -> None:
    """LISTEN notifications_outbox on a connection of its own; set ``wake`` on each NOTIFY."""
    import psycopg

    async with await psycopg.AsyncConnection.connect(
        db_url, autocommit=True, application_name="bench-notify-loop"
    ) as conn:
        await conn.execute("LISTEN notifications_outbox")
        wake.set()
        async for _ in conn.notifies():
            wake.set()


# --- procrastinate ---------------------------------------------------------------------------


def procrastinate_app(db_url: str) -> Any:
    import procrastinate

    return procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=db_url))


async def apply_procrastinate_schema(db_url: str) -> None:
    app = procrastinate_app(db_url)
    async with app.open_async():
        await app.schema_manager.apply_schema_async()


async def run_procrastinate(db_url: str, sink: str, concurrency: int) -> None:
    from importlib.metadata import version

    import aiohttp

    app = procrastinate_app(db_url)
    session: aiohttp.ClientSession | None = None

    async def post_task(key: str) -> None:
        nonlocal session
        if session is None:
            session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency))
        body: dict[str, Any] = {"title": "bench", "message": "bench message", "data": {},
                                  "idempotency_key": key, "delivery_id": None}  # fmt: skip
        if not await post(session, sink, key, body):
            raise RuntimeError(f"the sink refused {key}")

    app.task(name="post")(post_task)
    async with app.open_async():
        print(f"procrastinate worker ready {version('procrastinate')}", flush=True)
        try:
            await app.run_worker_async(concurrency=concurrency, install_signal_handlers=True)
        finally:
            if session is not None:
                await session.close()


def main() -> None:
    if len(sys.argv) == 1:
        print("bench/outbox_baselines.py holds the outbox benchmarks' baselines; run by them.")
        return
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "mode", choices=["poll", "notify-loop", "procrastinate", "procrastinate-schema"]
    )
    parser.add_argument("--db-url", required=True)
    parser.add_argument("--sink", default="", help="procrastinate: the URL its task POSTs to")
    parser.add_argument("--interval", type=float, default=5.0, help="poll: seconds between polls")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--batch", type=int, default=50, help="notify-loop: rows per claim")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if args.mode in ("poll", "notify-loop"):
        loop = run_poller(args.db_url, args.interval, args.concurrency,
                          listen=args.mode == "notify-loop", batch=args.batch)  # fmt: skip
        asyncio.run(loop)
    elif args.mode == "procrastinate":
        asyncio.run(run_procrastinate(args.db_url, args.sink, args.concurrency))
    else:
        asyncio.run(apply_procrastinate_schema(args.db_url))


if __name__ == "__main__":
    main()
