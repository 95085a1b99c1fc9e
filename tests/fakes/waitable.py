"""What every wait of the fakes and recorders is made of: a condition re-checked on every
change, with a timeout, so that no test sleeps to synchronise."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

TIMEOUT = 10.0  # seconds a wait allows by default: real sockets, a loaded machine


class Waitable:
    """Call ``_notify`` after every change; ``repr`` is what a timed-out wait shows."""

    def __init__(self) -> None:
        self._changed = asyncio.Event()

    def _notify(self) -> None:
        self._changed.set()

    async def wait_for(self, condition: Callable[[], bool], timeout: float = TIMEOUT) -> None:  # noqa: ASYNC109
        """Return once ``condition()`` holds (checked after every change), else TimeoutError."""
        try:
            async with asyncio.timeout(timeout):
                while not condition():
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise TimeoutError(f"condition not met in {timeout} s; {self!r}") from None
