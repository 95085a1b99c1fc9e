from __future__ import annotations

import logging

import pytest

from realtime.logs import BoundedLog


def test_one_line_per_interval_then_the_count(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr("realtime.logs.time.monotonic", lambda: now[0])
    log = BoundedLog(logging.getLogger("test.bounded"), every=60)
    with caplog.at_level(logging.WARNING, logger="test.bounded"):
        assert log.warning("x.failed", "failed", error="e1")
        assert not log.warning("x.failed", "failed")
        assert not log.warning("x.failed", "failed")
        assert log.warning("y.failed", "other key")  # keys are independent
        now[0] += 60
        assert log.warning("x.failed", "failed", error="e2")
    records = [(r.event, getattr(r, "suppressed", 0)) for r in caplog.records]  # type: ignore[attr-defined]
    assert records == [("x.failed", 0), ("y.failed", 0), ("x.failed", 2)]
