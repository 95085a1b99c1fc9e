"""Optional SIGTERM/SIGINT handling for a Runner, as a context manager.

First signal: graceful stop (stage 1 of the runner's shutdown). Second signal: forced stop.
Kept apart from the Runner so tests and embedding code can drive ``stop()`` themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterator

from services.runner import Runner

logger = logging.getLogger(__name__)

SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextlib.contextmanager
def handle_signals(runner: Runner) -> Iterator[None]:
    loop = asyncio.get_running_loop()

    def on_signal(signum: signal.Signals) -> None:
        logger.info("signal received", extra={"event": "runner.signal", "signal": signum.name})
        runner.stop()

    for signum in SIGNALS:
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        yield
    finally:
        for signum in SIGNALS:
            loop.remove_signal_handler(signum)
