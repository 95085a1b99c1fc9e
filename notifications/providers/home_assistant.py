"""Home Assistant ``notify.<service>`` over the REST API with a long-lived bearer token.

Config: ``base_url`` (e.g. http://homeassistant.local:8123), ``token`` (secret), ``service``
(``mobile_app_pixel`` or ``notify.mobile_app_pixel``). Sends
``POST <base_url>/api/services/notify/<service>`` with ``{"title", "message", "data"}``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from notifications.providers.base import (
    ConfigErrors,
    Message,
    Outgoing,
    Provider,
    base_headers,
    join_url,
    text_field,
    url_field,
)

# Home Assistant service names are slugs; anything else would also change the URL path.
_SERVICE = re.compile(r"[a-z0-9_]+")


class HomeAssistantProvider(Provider):
    type = "home_assistant"
    secret_fields = ("token",)

    def check_fields(self, config: Mapping[str, Any], errors: ConfigErrors) -> None:
        url_field(config, "base_url", errors, required=True)
        text_field(config, "token", errors, required=True)
        service = text_field(config, "service", errors, required=True)
        if service and not _SERVICE.fullmatch(service_name(service)):
            errors["service"] = (
                "Must be a notify service name such as mobile_app_pixel "
                "(lowercase letters, digits and underscores)."
            )

    def build(self, config: Mapping[str, Any], message: Message) -> Outgoing:
        service = service_name(config["service"])
        headers = {"Authorization": f"Bearer {config['token'].strip()}", **base_headers(message)}
        body: dict[str, Any] = {"message": message.message, "data": dict(message.data)}
        if message.title:
            body["title"] = message.title
        url = join_url(config["base_url"].strip(), f"api/services/notify/{service}")
        return Outgoing("POST", url, headers, json=body)


def service_name(configured: str) -> str:
    """``notify.mobile_app_x`` and ``mobile_app_x`` both mean service ``mobile_app_x``."""
    return configured.strip().removeprefix("notify.")


PROVIDER = HomeAssistantProvider()
