"""Waits on the injected clock, for the WebSocket clients: a timeout that a ``FakeClock``
drives, a sleep that stopping cuts short, and one connection's session raced against
stopping."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from services.clock import Clock


class ConnectionLost(Exception):
    """The connection ended or cannot be used: reconnect after a backoff."""


async def race_clock[T](clock: Clock, seconds: float, awaitable: Awaitable[T]) -> T:
    """``await awaitable``, or cancel it and raise TimeoutError after ``seconds`` on ``clock``."""
    work = asyncio.ensure_future(awaitable)
    timer = asyncio.ensure_future(clock.sleep(seconds))
    try:
        await asyncio.wait({work, timer}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        timer.cancel()
        if not work.done():
            work.cancel()
            await asyncio.wait({work})
    if work.cancelled():
        raise TimeoutError(f"no answer within {seconds:g} s")
    return work.result()


async def wait_or_stop(clock: Clock, seconds: float | None, stopping: asyncio.Event) -> None:
    """Sleep ``seconds`` on ``clock`` (until stopping when None); return early once stopping."""
    waiters: set[asyncio.Future[Any]] = {asyncio.ensure_future(stopping.wait())}
    if seconds is not None:
        waiters.add(asyncio.ensure_future(clock.sleep(seconds)))
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


async def session_until_stopped(
    session: Callable[[], Awaitable[Any]], stopping: asyncio.Event
) -> BaseException | None:
    """Run one connection's ``session()`` until it fails (return the error) or stopping (None).

    On stopping the session is cancelled and awaited, so its ``finally`` closes the socket.
    """
    task = asyncio.ensure_future(session())
    stop = asyncio.ensure_future(stopping.wait())
    try:
        await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.cancel()
        if not task.done():
            task.cancel()
            await asyncio.wait({task})
    if task.cancelled():
        if stopping.is_set():
            return None
        raise asyncio.CancelledError
    error = task.exception()  # retrieved even when stopping, so asyncio does not log it
    if stopping.is_set():
        return None
    return error or ConnectionLost("the session ended without an error")


def describe(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
