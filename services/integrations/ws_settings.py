"""The Home Assistant and Z-Wave JS clients' settings from an effective configuration.

``config`` is what ``config.load`` returns: the row's values over the field defaults of
``config_spec``. The settings dataclasses (in ``home_assistant.py`` and ``zwavejs.py``)
validate the values and raise ValueError, naming the field.
"""

from __future__ import annotations

from typing import Any

from services.integrations.config_spec import EffectiveConfig
from services.integrations.home_assistant import HomeAssistantSettings
from services.integrations.zwavejs import ZwaveJsSettings


def home_assistant_settings(config: EffectiveConfig) -> HomeAssistantSettings:
    return HomeAssistantSettings(**home_assistant_kwargs(config))


def zwavejs_settings(config: EffectiveConfig) -> ZwaveJsSettings:
    return ZwaveJsSettings(**zwavejs_kwargs(config))


def home_assistant_kwargs(config: EffectiveConfig) -> dict[str, Any]:
    values = config.values
    retry = float(values.get("auth_retry_interval") or 0)
    return {
        "base_url": str(values.get("url") or ""),
        "token": str(values.get("token") or ""),
        "verify_tls": bool(values.get("verify_tls", True)),
        "include": tuple(values.get("include") or ()),
        "exclude": tuple(values.get("exclude") or ()),
        "heartbeat_interval": float(values.get("heartbeat_interval") or 30.0),
        "auth_retry_interval": retry if retry > 0 else None,
    }


def zwavejs_kwargs(config: EffectiveConfig) -> dict[str, Any]:
    values = config.values
    return {
        "url": str(values.get("url") or ""),
        "verify_tls": bool(values.get("verify_tls", True)),
        "heartbeat_interval": float(values.get("heartbeat_interval") or 30.0),
    }
