"""The processes ``mqtt_ingest.py`` measures (a helper; run by it, not on its own).

``python -m bench.mqtt_subjects MODE --url mqtt://host:port [--base TOPIC] [--count N]``

* ``ingest-asyncio``: the worker's transport (``MqttClient``, paho on the asyncio loop) with
  the Zigbee2MQTT layer on top; ``on_state`` counts. Prints ``ready`` once subscribed, then
  ``done <received> <seconds from first to last> <cpu seconds from ready to last>``.
* ``ingest-thread``: the same layer fed by a paho ``loop_start()`` client whose network thread
  hands each message to the loop with ``call_soon_threadsafe``.
* ``idle-asyncio`` / ``idle-thread``: the two transports connected, subscribed and quiet.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()


class Counter:
    """``on_state`` that counts, and notes when the ``expected``-th state came."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.count = 0
        self.first: float | None = None
        self.done = asyncio.Event()
        self.cpu_at_done = 0.0
        self.last = 0.0

    async def __call__(self, *args: Any, **kwargs: Any) -> bool:
        now = time.perf_counter()
        self.first = self.first if self.first is not None else now
        self.count += 1
        if self.count >= self.expected and not self.done.is_set():
            self.last, self.cpu_at_done = now, time.process_time()
            self.done.set()
        return True


async def _asyncio_transport(url: str, hub: Any, keepalive: int) -> tuple[Any, Any]:
    from services.clock import RealClock
    from services.integrations.mqtt import MqttClient
    from services.integrations.mqtt_settings import MqttSettings, parse_url

    parts = parse_url(url)
    settings = MqttSettings(host=parts["host"], port=parts["port"], keepalive=keepalive)
    client = MqttClient(
        settings, clock=RealClock(), report=lambda *a, **k: None, hub=hub, worker_id="bench"
    )
    return client, client.run


def _thread_transport(url: str, hub: Any, keepalive: int) -> Any:
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.subscribeoptions import SubscribeOptions

    from services.integrations.mqtt_settings import parse_url

    loop = asyncio.get_running_loop()
    parts = parse_url(url)
    client = paho.Client(  # MQTT 5, like the worker's transport on Mosquitto
        CallbackAPIVersion.VERSION2, client_id=f"bench-thread-{os.getpid()}", protocol=paho.MQTTv5
    )
    subscribed = asyncio.Event()

    def on_connect(c: Any, _u: Any, _f: Any, _rc: Any, _p: Any) -> None:
        c.subscribe([(f, SubscribeOptions(qos=1)) for f in hub.filters])

    def on_subscribe(*_: Any) -> None:
        loop.call_soon_threadsafe(subscribed.set)

    def on_message(_c: Any, _u: Any, message: Any) -> None:
        # The safe bridge: paho's network thread never touches the layer; it hops to the loop.
        loop.call_soon_threadsafe(hub.dispatch, message.topic, message.payload)

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.connect(parts["host"], parts["port"], keepalive)
    client.loop_start()
    return client, subscribed


async def main(args: argparse.Namespace) -> None:
    _setup_django()
    from services.clock import RealClock
    from services.integrations.mqtt import MqttHub
    from services.integrations.zigbee2mqtt import Zigbee2MqttClient, Zigbee2MqttSettings

    hub = MqttHub()
    counter = Counter(args.count)
    layer = Zigbee2MqttClient(
        Zigbee2MqttSettings(base_topic=args.base), clock=RealClock(),
        report=lambda *a, **k: None, on_state=counter, mqtt=hub,
    )  # fmt: skip
    stopping = asyncio.Event()
    layer_task = asyncio.create_task(layer.run(stopping))
    await asyncio.sleep(0)  # the layer subscribes its filter on the hub
    transport: Any = None
    if args.mode.endswith("asyncio"):
        client, run = await _asyncio_transport(args.url, hub, args.keepalive)
        transport = asyncio.create_task(run(stopping))
        while f"{args.base}/#" not in client.subscribed:
            await client.subscribed_changed.wait()
    else:
        paho_client, subscribed = _thread_transport(args.url, hub, args.keepalive)
        await subscribed.wait()
    cpu_ready = time.process_time()
    print("ready", flush=True)
    if args.mode.startswith("idle"):
        await asyncio.Event().wait()  # until SIGTERM kills us
    try:
        async with asyncio.timeout(args.timeout):
            await counter.done.wait()
    except TimeoutError:
        pass
    first = counter.first or time.perf_counter()
    last = counter.last or time.perf_counter()
    cpu = (counter.cpu_at_done or time.process_time()) - cpu_ready
    print(f"done {counter.count} {last - first:.6f} {cpu:.6f}", flush=True)
    stopping.set()
    if transport is not None:
        await transport
    else:
        paho_client.disconnect()
        paho_client.loop_stop()
    await layer_task


if __name__ == "__main__":
    if len(sys.argv) == 1:
        print("bench/mqtt_subjects.py is a helper of bench/mqtt_ingest.py; it measures nothing.")
        sys.exit(0)
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["ingest-asyncio", "ingest-thread", "idle-asyncio",
                                         "idle-thread"])  # fmt: skip
    parser.add_argument("--url", required=True)
    parser.add_argument("--base", default="bench-z2m")
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--keepalive", type=int, default=60)
    asyncio.run(main(parser.parse_args()))
