"""Discord webhook: a plain message (``content``) or an embed.

Config: ``url`` (secret: the URL embeds the webhook's token), ``mode`` content|embed,
``username`` (optional display name). Discord answers 204 No Content on success.
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
    text_field,
    url_field,
)

MODES = ("content", "embed")
# Discord's documented limits; longer payloads are refused with a 400.
MAX_CONTENT = 2000
MAX_EMBED_TITLE = 256
MAX_EMBED_DESCRIPTION = 4096


class DiscordProvider(Provider):
    type = "discord"
    secret_fields = ("url",)

    def check_fields(self, config: Mapping[str, Any], errors: ConfigErrors) -> None:
        url_field(config, "url", errors, required=True)
        choice_field(config, "mode", MODES, errors)
        text_field(config, "username", errors, required=False)

    def build(self, config: Mapping[str, Any], message: Message) -> Outgoing:
        url = config["url"].strip()
        return Outgoing("POST", url, base_headers(message), json=payload(config, message))


def payload(config: Mapping[str, Any], message: Message) -> dict[str, Any]:
    # Alarm text may quote user input: never let it ping @everyone or roles.
    body: dict[str, Any] = {"allowed_mentions": {"parse": []}}
    if (config.get("mode") or "content").strip() == "embed":
        embed = {"description": _cut(message.message, MAX_EMBED_DESCRIPTION)}
        if message.title:
            embed["title"] = _cut(message.title, MAX_EMBED_TITLE)
        body["embeds"] = [embed]
    else:
        text = f"**{message.title}**\n{message.message}" if message.title else message.message
        body["content"] = _cut(text, MAX_CONTENT)
    if username := (config.get("username") or "").strip():
        body["username"] = username
    return body


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


PROVIDER = DiscordProvider()
