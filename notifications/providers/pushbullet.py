"""Pushbullet push (``POST /v2/pushes``, ``Access-Token`` header).

Config: ``token`` (secret), ``type`` note|link (``url`` required for link), optional
``device_iden`` to target one device, ``base_url`` (default https://api.pushbullet.com).
The delivery's idempotency key is sent as the push ``guid``, Pushbullet's client-side id.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from notifications.providers.base import (
    ConfigErrors,
    Message,
    Outgoing,
    Provider,
    base_headers,
    choice_field,
    join_url,
    text_field,
    url_field,
)

DEFAULT_BASE_URL = "https://api.pushbullet.com"
PUSH_TYPES = ("note", "link")


class PushbulletProvider(Provider):
    type = "pushbullet"
    secret_fields = ("token",)

    def check_fields(self, config: Mapping[str, Any], errors: ConfigErrors) -> None:
        text_field(config, "token", errors, required=True)
        push_type = choice_field(config, "type", PUSH_TYPES, errors)
        url_field(config, "url", errors, required=push_type == "link")
        text_field(config, "device_iden", errors, required=False)
        url_field(config, "base_url", errors, required=False)

    def build(self, config: Mapping[str, Any], message: Message) -> Outgoing:
        base = (config.get("base_url") or DEFAULT_BASE_URL).strip()
        headers = {"Access-Token": config["token"].strip(), **base_headers(message)}
        url = join_url(base, "v2/pushes")
        return Outgoing("POST", url, headers, json=payload(config, message))


def payload(config: Mapping[str, Any], message: Message) -> dict[str, Any]:
    push_type = (config.get("type") or "note").strip()
    body: dict[str, Any] = {"type": push_type, "title": message.title, "body": message.message}
    if push_type == "link":
        body["url"] = config["url"].strip()
    if device := (config.get("device_iden") or "").strip():
        body["device_iden"] = device
    if message.idempotency_key:
        body["guid"] = message.idempotency_key
    return body


PROVIDER = PushbulletProvider()
