"""Notification providers by type name; see ``base.Provider`` for what each offers."""

from __future__ import annotations

from notifications.providers import discord, home_assistant, pushbullet, slack, webhook
from notifications.providers.base import Message, Provider, SendResult

_PROVIDERS: dict[str, Provider] = {
    module.PROVIDER.type: module.PROVIDER
    for module in (webhook, slack, discord, pushbullet, home_assistant)
}
PROVIDER_TYPES: tuple[str, ...] = tuple(_PROVIDERS)

__all__ = ["PROVIDER_TYPES", "Message", "Provider", "SendResult", "UnknownProvider", "get_provider"]


class UnknownProvider(KeyError):
    def __str__(self) -> str:
        # KeyError's own str() is the repr of its argument: quotes around the whole sentence.
        return str(self.args[0])


def get_provider(provider_type: str) -> Provider:
    try:
        return _PROVIDERS[provider_type]
    except KeyError:
        known = ", ".join(PROVIDER_TYPES)
        raise UnknownProvider(f"unknown provider type {provider_type!r}; known: {known}") from None
