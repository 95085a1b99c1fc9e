"""The integrations the worker holds connections to: MQTT (with Zigbee2MQTT and Frigate on top),
Home Assistant and Z-Wave JS. One worker component each; entity changes go to
``alarm.services``, connection changes to the status hub of ``realtime``."""
