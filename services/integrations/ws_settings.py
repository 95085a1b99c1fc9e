"""Pure: the keyword arguments of the Home Assistant and Z-Wave JS clients' settings.

``HomeAssistantSettings(**home_assistant_kwargs(config))`` and
``ZwaveJsSettings(**zwavejs_kwargs(config))`` (their dataclasses, in ``home_assistant.py`` and
``zwavejs.py``, validate the values and raise ValueError). ``config`` is the effective
configuration (``config.load``): the row's values over the field defaults of ``config_spec``.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from services.integrations.config_spec import EffectiveConfig


def installed(module: str) -> bool:
    """Whether ``module`` (another branch's client) is part of this installation."""
    return importlib.util.find_spec(module) is not None


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
