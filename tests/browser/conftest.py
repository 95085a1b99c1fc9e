from __future__ import annotations

from tests.integration.conftest import db_call, stores  # noqa: F401 - fixtures
