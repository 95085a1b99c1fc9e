from __future__ import annotations

import asyncio
import io
import logging
from typing import Any

import pytest

from services.logging import KeyedFormatter

FORMAT = "%(levelname)s %(name)s %(message)s"


def emit(
    message: str,
    *,
    extra: dict[str, Any] | None = None,
    exc_info: BaseException | None = None,
    fmt: str = FORMAT,
) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(KeyedFormatter(fmt))
    logger = logging.Logger("keyed")  # stand-alone: no propagation to the test's handlers
    logger.addHandler(handler)
    logger.warning(message, extra=extra, exc_info=exc_info)
    return stream.getvalue().rstrip("\n")


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (None, "WARNING keyed hello"),
        ({"event": "runner.started"}, "WARNING keyed hello event=runner.started"),
        (
            {"event": "runner.backoff", "delay": 2.0, "component": "cron"},
            "WARNING keyed hello event=runner.backoff component='cron' delay=2.0",
        ),
        ({"url": "http://x/healthz"}, "WARNING keyed hello url='http://x/healthz'"),
        ({"event": None, "n": 1}, "WARNING keyed hello n=1"),
        ({"event": "", "n": 1}, "WARNING keyed hello n=1"),
        (
            {"event": "runner.started", "components": ["a", "b"], "forced": False},
            "WARNING keyed hello event=runner.started components=['a', 'b'] forced=False",
        ),
    ],
)
def test_event_key_and_extras_follow_the_message(
    extra: dict[str, Any] | None, expected: str
) -> None:
    assert emit("hello", extra=extra) == expected


def test_pairs_come_before_the_traceback() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError as exc:
        error = exc
    text = emit(
        "component crashed",
        extra={"event": "runner.component_crashed", "component": "cron"},
        exc_info=error,
    )
    first, *rest = text.splitlines()
    assert (
        first == "WARNING keyed component crashed event=runner.component_crashed component='cron'"
    )
    assert rest[0] == "Traceback (most recent call last):"
    assert rest[-1] == "RuntimeError: boom"
    assert "event=" not in "\n".join(rest)


def test_standard_attributes_are_not_repeated_as_pairs() -> None:
    text = emit("hi", extra={"event": "x"}, fmt="%(asctime)s %(levelname)s %(message)s")
    assert text.endswith(" WARNING hi event=x")
    for name in ("asctime", "message", "levelname", "args", "msg", "taskName", "created"):
        assert f"{name}=" not in text


async def test_task_name_inside_asyncio_is_not_a_pair() -> None:
    async def log_in_task() -> str:
        return emit("inside", extra={"event": "k"})

    text = await asyncio.create_task(log_in_task(), name="worker-task")
    assert text == "WARNING keyed inside event=k"


def test_message_arguments_are_interpolated_first() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(KeyedFormatter("%(message)s"))
    logger = logging.Logger("keyed")
    logger.addHandler(handler)
    logger.info("%s of %d", "one", 2, extra={"event": "k", "v": "x y"})
    assert stream.getvalue() == "one of 2 event=k v='x y'\n"
