"""The integrations' worker components and their collaborators.

Components: ``leadership`` (the advisory lock) and one ``IntegrationComponent`` per client
type, named after its kind (``mqtt``, ``zigbee2mqtt``, ``frigate``, ``home_assistant``,
``zwavejs``). They share, through ``ctx.singleton``: the leadership
(``integrations.leadership``) and the MQTT hub (``integrations.mqtt``). Connection changes go
to the status hub of ``realtime`` (``report``), entity states to
``alarm.services.aupdate_entity_state`` (``on_state``).

A client type is ``ClientType(kind, factory, build_settings)``: ``factory(settings, *, clock,
report, on_state)`` is the client class, ``build_settings(EffectiveConfig) -> settings`` raises
ValueError when the configuration cannot be used.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from alarm.services import aupdate_entity_state
from realtime.hub import status_hub
from services import embedded
from services.integrations import (
    config,
    frigate,
    home_assistant,
    mqtt_settings,
    store,
    zigbee2mqtt,
    zwavejs,
)
from services.integrations.component import ClientType, IntegrationComponent
from services.integrations.frigate_parse import Detection
from services.integrations.home_assistant import HomeAssistantClient
from services.integrations.leadership import Leadership
from services.integrations.mqtt import MqttClient, MqttHub
from services.integrations.zwavejs import ZwaveJsClient

if TYPE_CHECKING:
    from services.runner import Component
    from services.worker import WorkerContext


def worker_components(ctx: WorkerContext) -> list[Component]:
    leadership = ctx.singleton("integrations.leadership", lambda: Leadership(ctx.worker_id))
    report = status_hub(ctx).report

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
                on_state=aupdate_entity_state,
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
        ClientType(
            "home_assistant", HomeAssistantClient, home_assistant.settings_from
        ),
        ClientType("zwavejs", ZwaveJsClient, zwavejs.settings_from),
    ]  # fmt: skip
