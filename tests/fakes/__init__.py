"""Local stand-ins for external services (only ever bound to 127.0.0.1 / ::1)."""

from __future__ import annotations
