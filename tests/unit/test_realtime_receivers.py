from __future__ import annotations

from typing import Any

import pytest

from alarm import signals
from realtime import receivers


def test_each_signal_pushes_its_kwargs(monkeypatch: pytest.MonkeyPatch) -> None:
    pushed: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(receivers.broadcast, "alarm_state", lambda s: pushed.append(("a", s)))
    monkeypatch.setattr(receivers.broadcast, "entity_state", lambda e: pushed.append(("e", e)))
    receivers.connect_alarm_signals()  # as RealtimeConfig.ready() did: still one receiver each
    snapshot = {"state": "armed_away", "previous_state": "arming", "changed_at": "x", "delay": None}
    entity = {"entity_id": "binary_sensor.door", "state": "on", "source": "zigbee2mqtt"}
    signals.alarm_state_changed.send(sender=None, snapshot=snapshot)
    signals.entity_state_changed.send(sender=None, entity=entity)
    assert pushed == [("a", snapshot), ("e", entity)]


def test_a_failing_push_never_reaches_the_sender(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(_: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(receivers.broadcast, "alarm_state", broken)
    receivers.on_alarm_state_changed(sender=None, snapshot={})  # logged, not raised


def test_a_task_run_change_is_one_hint_and_no_query(monkeypatch: pytest.MonkeyPatch) -> None:
    from services.run_signals import task_run_changed

    hinted: list[tuple[str, tuple[str, ...]]] = []
    monkeypatch.setattr(
        receivers.broadcast, "task_runs_changed", lambda r, j: hinted.append((r, j))
    )
    receivers.connect_run_signals()  # as RealtimeConfig.ready() did: still one receiver
    task_run_changed.send(sender=None, reason="finished", jobs=("t",))  # no database here
    assert hinted == [("finished", ("t",))]
