from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

# One key for the whole run: no test writes a key file into the checkout's .local/.
NOTIFICATIONS_TEST_KEY = Fernet.generate_key().decode()


@pytest.fixture(autouse=True)
def notifications_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFICATIONS_KEY", NOTIFICATIONS_TEST_KEY)
