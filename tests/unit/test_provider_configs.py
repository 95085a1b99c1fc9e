"""Provider configs are decrypted and validated once per version of the provider row."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from notifications import crypto
from notifications.outbox_sql import ClaimedDelivery
from notifications.sending import ProviderConfigs, prepare


def claimed(config: Any = None, **provider: Any) -> ClaimedDelivery:
    fields: dict[str, Any] = {"id": 7, "name": "hook", "type": "webhook", "enabled": True}
    fields.update(provider)
    if config is None:
        config = {"url": "https://example.com/hook", "auth": "bearer", "token": "s3cret"}
    text = json.dumps(crypto.encrypt_fields(config, ("token",))) if config != "" else None
    return ClaimedDelivery(
        1, "t", "m", {}, 1, 5, "key", fields["id"], fields["name"], fields["type"],
        fields["enabled"], text,
    )  # fmt: skip


def test_a_provider_version_is_prepared_once_and_its_secrets_decrypted() -> None:
    configs = ProviderConfigs()
    delivery = claimed()
    assert "s3cret" not in str(delivery.provider_config)  # stored encrypted
    # Another delivery to the same provider (Fernet tokens differ per encryption: one text).
    first, again = configs.get(delivery), configs.get(replace(delivery, id=2, title="other"))
    assert first is again and configs.prepared == 1
    assert first.problem is None and first.provider is not None
    assert first.config["token"] == "s3cret"


@pytest.mark.parametrize(
    "change",
    [
        {"config": {"url": "https://example.com/other"}},
        {"enabled": False},
        {"type": "slack"},
        {"name": "renamed"},
    ],
)
def test_any_change_to_the_provider_is_prepared_anew(change: dict[str, Any]) -> None:
    configs = ProviderConfigs()
    configs.get(claimed())
    configs.get(claimed(**change))
    assert configs.prepared == 2


@pytest.mark.parametrize(
    ("delivery", "code"),
    [
        (claimed(type=None, id=None, name=None, enabled=None, config=""), "provider_deleted"),
        (claimed(enabled=False), "provider_disabled"),
        (claimed(type="telegram"), "unknown_provider"),
        (claimed(config={"url": "ftp://example.com"}), "invalid_config"),
        (claimed(config={"token": crypto.encrypt("x")[:-4]}), "secret_unreadable"),
    ],
)
def test_unusable_providers_say_why(delivery: ClaimedDelivery, code: str) -> None:
    ready = prepare(delivery)
    assert ready.provider is None and ready.problem is not None
    assert ready.problem[0] == code


def test_the_cache_is_bounded() -> None:
    configs = ProviderConfigs(limit=2)
    deliveries = [claimed(id=n) for n in range(3)]
    for delivery in deliveries:
        configs.get(delivery)
    assert configs.prepared == 3
    configs.get(deliveries[2])  # kept after the others were dropped
    assert configs.prepared == 3
