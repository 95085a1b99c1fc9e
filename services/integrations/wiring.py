"""The integrations' worker components, and where the other branches' pieces plug in.

Components: ``leadership`` (the advisory lock) and one ``IntegrationComponent`` per client
type, named after its kind (``mqtt``, ``zigbee2mqtt``, ``frigate``, and the plugged-in ones).
They share, through ``ctx.singleton``: the leadership (``integrations.leadership``) and the MQTT
hub (``integrations.mqtt``).

Injected collaborators (CONTRACTS items 1 and 3), resolved when the components are built:
``report`` is ``realtime.hub.status_hub(ctx).report`` and ``on_state`` is
``alarm.services.aupdate_entity_state``. Where a module is not installed yet, ``report`` logs
each status event (``integrations.status``) and ``on_state`` fails every call with a clear
error, which the layers count as failed deliveries (bounded logging).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from services import embedded
from services.integrations import config, frigate, mqtt_settings, store, ws_settings, zigbee2mqtt
from services.integrations.component import ClientType, IntegrationComponent
from services.integrations.frigate_parse import Detection
from services.integrations.leadership import Leadership
from services.integrations.mqtt import MqttClient, MqttHub

if TYPE_CHECKING:
    from services.runner import Component
    from services.worker import WorkerContext

logger = logging.getLogger(__name__)

Report = Callable[..., None]
OnState = Callable[..., Awaitable[bool]]


def worker_components(ctx: WorkerContext) -> list[Component]:
    leadership = ctx.singleton("integrations.leadership", lambda: Leadership(ctx.worker_id))
    report, on_state = status_report(ctx), entity_states()

    async def load(kind: str) -> config.EffectiveConfig:
        return await ctx.db.call(config.load, kind)

    components: list[Component] = [leadership]
    for client_type in client_types(ctx):
        components.append(
            IntegrationComponent(
                client_type,
                leadership=leadership,
                load=load,
                subscribe=ctx.listener.subscribe,
                clock=ctx.clock,
                report=report,
                on_state=on_state,
            )
        )
    return components


def client_types(ctx: WorkerContext) -> list[ClientType]:
    hub = ctx.singleton("integrations.mqtt", lambda: MqttHub(ctx.clock.monotonic))

    async def save_detection(detection: Detection) -> bool:
        return await ctx.db.call(store.save_detection, detection)

    mqtt_client = partial(
        MqttClient, hub=hub, worker_id=ctx.worker_id, resolve_embedded=embedded.mqtt_url
    )
    return [
        ClientType("mqtt", mqtt_client, mqtt_settings.settings_from),
        ClientType(
            "zigbee2mqtt", partial(zigbee2mqtt.Zigbee2MqttClient, mqtt=hub),
            zigbee2mqtt.settings_from,
        ),
        ClientType(
            "frigate", partial(frigate.FrigateClient, mqtt=hub, store=save_detection),
            frigate.settings_from,
        ),
        *plugged_in(ctx),
    ]  # fmt: skip


# The WebSocket clients of the integrations-ws branch (CONTRACTS item 4): kind, module, client
# class, settings class, and the pure builder of the settings' keyword arguments. Each registers
# once its module is installed; its settings class validates the values (ValueError).
WEBSOCKET_CLIENTS: tuple[tuple[str, str, str, str, Callable[..., dict[str, Any]]], ...] = (
    ("home_assistant", "services.integrations.home_assistant", "HomeAssistantClient",
     "HomeAssistantSettings", ws_settings.home_assistant_kwargs),
    ("zwavejs", "services.integrations.zwavejs", "ZwaveJsClient", "ZwaveJsSettings",
     ws_settings.zwavejs_kwargs),
)  # fmt: skip


def plugged_in(ctx: WorkerContext) -> list[ClientType]:
    """Client types of the integrations built elsewhere (Home Assistant, Z-Wave JS).

    Each is ``ClientType(kind, factory, build_settings)``: ``factory(settings, *, clock, report,
    on_state)`` is the client class, ``build_settings(EffectiveConfig) -> settings`` raises
    ValueError when the configuration cannot be used.
    """
    found = []
    for kind, module_name, client, settings_class, kwargs in WEBSOCKET_CLIENTS:
        if not ws_settings.installed(module_name):
            continue
        module = importlib.import_module(module_name)
        build = partial(_settings, getattr(module, settings_class), kwargs)
        found.append(ClientType(kind, getattr(module, client), build))
    return found


def _settings(
    settings_class: Callable[..., Any],
    kwargs: Callable[[config.EffectiveConfig], dict[str, Any]],
    effective: config.EffectiveConfig,
) -> Any:
    return settings_class(**kwargs(effective))


# --- injected collaborators --------------------------------------------------------------------


def status_report(ctx: WorkerContext) -> Report:
    """The status hub's ``report`` (realtime), else one that logs each status event."""
    if importlib.util.find_spec("realtime.hub") is None:
        return logged_report
    hub = importlib.import_module("realtime.hub").status_hub(ctx)
    report: Report = hub.report
    return report


def logged_report(
    integration: str, event: str, *, error: str | None = None, details: dict[str, Any] | None = None
) -> None:
    logger.info(
        "%s: %s",
        integration,
        event,
        extra={
            "event": "integrations.status",
            "integration": integration,
            "status": event,
            "error": error,
            "details": details or {},
        },
    )


def entity_states() -> OnState:
    """``alarm.services.aupdate_entity_state``, else a sink that refuses every state."""
    if importlib.util.find_spec("alarm.services") is None:
        return entity_states_unavailable
    found: OnState = importlib.import_module("alarm.services").aupdate_entity_state
    return found


async def entity_states_unavailable(
    entity_id: str,
    state: str,
    attributes: dict[str, Any] | None = None,
    *,
    source: str,
    name: str | None = None,
    at: datetime | None = None,
) -> bool:
    raise RuntimeError(
        f"cannot store {entity_id}: alarm.services.aupdate_entity_state is not installed"
    )
