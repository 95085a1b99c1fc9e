"""Signals the alarm sends after commit, in whichever process changed it.

- ``alarm_state_changed(snapshot=...)``: the dict ``alarm_state_snapshot()`` returns;
- ``entity_state_changed(entity=...)``: ``{"entity_id", "domain", "name", "state",
  "attributes", "last_changed" (ISO 8601 or None), "source"}``.

Both are sent from ``transaction.on_commit``: only committed changes are announced, and a
receiver never delays the transaction. The realtime app connects its broadcast to them.
"""

from __future__ import annotations

from django.dispatch import Signal

alarm_state_changed = Signal()
entity_state_changed = Signal()
