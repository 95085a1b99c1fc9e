"""What each integration's configuration holds: fields, defaults, secrets, and their validation.

Pure: no Django, no I/O. ``IntegrationConfig.clean()`` and the settings builders call
``validate``; the admin asks ``secret_fields`` what to mask. A configuration is a JSON object
of field -> value; a missing field takes its default.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

Check = Callable[[Any], str | None]

EMBEDDED_URL = "embedded:"  # the MQTT "url" meaning "the embedded broker" (started on connect)


@dataclass(frozen=True)
class EffectiveConfig:
    kind: str
    configured: bool  # a row or an environment default exists
    enabled: bool
    values: dict[str, Any] = field(default_factory=dict)  # decrypted, with defaults
    source: str = "none"  # "row", "environment" or "none"
    error: str | None = None  # a row that does not validate or decrypt

    @property
    def active(self) -> bool:
        """Whether a client should run for it."""
        return self.configured and self.enabled and self.error is None


@dataclass(frozen=True)
class Field:
    name: str
    type: type  # str, int, float, bool or list
    default: Any = None
    required: bool = False
    secret: bool = False
    help: str = ""
    check: Check | None = None  # extra validation of a present, well-typed value


@dataclass(frozen=True)
class KindSpec:
    kind: str
    label: str
    fields: tuple[Field, ...]
    # Checks across fields (e.g. "url or the environment"), run once each field passed.
    check_all: Callable[[dict[str, Any]], dict[str, str]] | None = None

    def field(self, name: str) -> Field:
        return next(f for f in self.fields if f.name == name)

    @property
    def secret_fields(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields if f.secret)

    def defaults(self) -> dict[str, Any]:
        return {f.name: f.default for f in self.fields}

    def with_defaults(self, values: dict[str, Any]) -> dict[str, Any]:
        """``values`` over the defaults; ``None`` or "" means "the default"."""
        merged = self.defaults()
        merged.update({k: v for k, v in values.items() if v not in (None, "")})
        return merged

    def validate(self, values: object) -> dict[str, str]:
        """Field name -> problem (``__all__`` for the object itself); {} when valid."""
        if not isinstance(values, dict):
            return {"__all__": f"must be a JSON object, got {type(values).__name__}"}
        known = {f.name for f in self.fields}
        errors = {
            name: f"unknown field; known fields: {', '.join(sorted(known))}"
            for name in values
            if name not in known
        }
        for spec in self.fields:
            value = values.get(spec.name)
            if value in (None, ""):
                if spec.required and spec.default in (None, ""):
                    errors[spec.name] = "is required"
                continue  # the default applies
            problem = _type_problem(spec, value) or (spec.check(value) if spec.check else None)
            if problem:
                errors[spec.name] = problem
        if not errors and self.check_all is not None:
            errors.update(self.check_all(self.with_defaults(values)))
        return errors


def _type_problem(spec: Field, value: Any) -> str | None:
    if spec.type is float and isinstance(value, int) and not isinstance(value, bool):
        return None
    if spec.type in (int, float) and isinstance(value, bool):
        return f"must be a number, got {value!r}"
    if not isinstance(value, spec.type):
        names = {str: "text", int: "a whole number", float: "a number", bool: "true or false"}
        return f"must be {names.get(spec.type, spec.type.__name__)}, got {value!r}"
    if isinstance(value, list) and not all(isinstance(item, str) for item in value):
        return "must be a list of text values"
    return None


# --- reusable checks ---------------------------------------------------------------------------


def between(low: float, high: float) -> Check:
    def check(value: Any) -> str | None:
        return None if low <= value <= high else f"must be between {low:g} and {high:g}"

    return check


def one_of(*choices: str) -> Check:
    def check(value: Any) -> str | None:
        return None if value in choices else f"must be one of {', '.join(choices)}"

    return check


def url_with(*schemes: str, allow_password: bool = True) -> Check:
    def check(value: Any) -> str | None:
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError for a port out of range
        except ValueError as exc:
            return f"is not a valid URL: {exc}"
        if parts.scheme.lower() not in schemes or not parts.hostname:
            return f"must look like {schemes[0]}://host:port (schemes: {', '.join(schemes)})"
        if parts.password and not allow_password:
            return "must not contain a password: put it in the password field (kept encrypted)"
        return None

    return check


_TOPIC_LEVEL = re.compile(r"^[^#+\x00]*$")


def topic_prefix_problem(value: Any) -> str | None:
    """A topic prefix (``zigbee2mqtt``, ``home/zigbee``): no wildcards, no empty levels."""
    if not isinstance(value, str) or not value:
        return "must be a topic such as zigbee2mqtt"
    if value.startswith("$") or value.endswith("/") or value.startswith("/"):
        return "must not start with $ or /, nor end with /"
    levels = value.split("/")
    if any(not level or not _TOPIC_LEVEL.match(level) for level in levels):
        return "must not contain empty levels or the wildcards + and #"
    if len(value.encode()) > 1024:
        return "is too long (at most 1024 bytes)"
    return None


# --- the integrations --------------------------------------------------------------------------

MQTT_SCHEMES = ("mqtt", "mqtts", "tcp", "ssl")


def _mqtt_backoff(values: dict[str, Any]) -> dict[str, str]:
    if values["reconnect_min"] > values["reconnect_max"]:
        return {"reconnect_max": "must be at least reconnect_min"}
    return {}


MQTT = KindSpec(
    "mqtt",
    "MQTT broker",
    (
        Field(
            "url",
            str,
            "",
            help="mqtt://host:1883 or mqtts://host:8883; empty: the MQTT_URL environment "
            "variable (or the embedded broker when that is unset).",
            check=url_with(*MQTT_SCHEMES, allow_password=False),
        ),
        Field("username", str, "", help="Overrides a user name in the URL."),
        Field("password", str, "", secret=True, help="Overrides a password in the URL."),
        Field("client_id_prefix", str, "alarm", help="Each worker adds a unique suffix."),
        Field(
            "keepalive", int, 60, help="Seconds between pings when quiet.", check=between(5, 3600)
        ),
        Field(
            "protocol",
            str,
            "auto",
            help="auto (5, else 3.1.1), 5 or 3.1.1.",
            check=one_of("auto", "5", "3.1.1"),
        ),
        Field("tls_ca_file", str, "", help="CA bundle for mqtts:// (empty: the system's)."),
        Field("tls_insecure", bool, False, help="Skip the broker certificate check (mqtts://)."),
        Field(
            "reconnect_min",
            float,
            1.0,
            help="First reconnect delay, seconds.",
            check=between(0.01, 3600),
        ),
        Field(
            "reconnect_max",
            float,
            120.0,
            help="Longest reconnect delay, seconds.",
            check=between(0.01, 3600),
        ),
        Field(
            "max_payload",
            int,
            1_048_576,
            help="Bytes; longer messages are counted, dropped.",
            check=between(1, 256 * 1024 * 1024),
        ),
    ),
    check_all=_mqtt_backoff,
)

ZIGBEE2MQTT = KindSpec(
    "zigbee2mqtt",
    "Zigbee2MQTT",
    (
        Field(
            "base_topic",
            str,
            "zigbee2mqtt",
            help="Zigbee2MQTT's base_topic.",
            check=topic_prefix_problem,
        ),
        Field(
            "stale_after",
            float,
            75.0,
            help="Seconds without a message before Zigbee2MQTT counts as unavailable.",
            check=between(1, 86400),
        ),
        Field(
            "ignored_attributes",
            list,
            ["linkquality", "last_seen", "elapsed"],
            help="Device attributes left out (they change on every message).",
        ),
    ),
)

FRIGATE = KindSpec(
    "frigate",
    "Frigate",
    (
        Field(
            "topic_prefix",
            str,
            "frigate",
            help="Frigate's mqtt.topic_prefix.",
            check=topic_prefix_problem,
        ),
    ),
)

# Home Assistant and Z-Wave JS: the fields their clients' settings take (their modules'
# ``settings_from`` map them onto HomeAssistantSettings and ZwaveJsSettings, which validate
# the rest).
HOME_ASSISTANT = KindSpec(
    "home_assistant",
    "Home Assistant",
    (
        Field("url", str, "", required=True, help="http://homeassistant.local:8123",
              check=url_with("http", "https", "ws", "wss")),
        Field("token", str, "", required=True, secret=True, help="A long-lived access token."),
        Field("verify_tls", bool, True, help="Check the certificate of an https:// URL."),
        Field("include", list, [], help='entity_id globs to take, e.g. ["binary_sensor.*"]; '
              "empty: every entity."),
        Field("exclude", list, [], help="entity_id globs to leave out."),
        Field("heartbeat_interval", float, 30.0, help="Seconds of silence before a ping.",
              check=between(1, 3600)),
        Field("auth_retry_interval", float, 0.0, help="Seconds between retries of a refused "
              "token; 0: wait for a configuration change.", check=between(0, 86400)),
    ),
)  # fmt: skip

ZWAVEJS = KindSpec(
    "zwavejs",
    "Z-Wave JS",
    (
        Field("url", str, "", required=True, help="ws://host:3000", check=url_with("ws", "wss")),
        Field("verify_tls", bool, True, help="Check the certificate of a wss:// URL."),
        Field("heartbeat_interval", float, 30.0, help="Seconds of silence before a ping.",
              check=between(1, 3600)),
    ),
)  # fmt: skip

_specs: dict[str, KindSpec] = {
    s.kind: s for s in (MQTT, ZIGBEE2MQTT, FRIGATE, HOME_ASSISTANT, ZWAVEJS)
}
KINDS: tuple[str, ...] = tuple(_specs)


def spec_for(kind: str) -> KindSpec:
    try:
        return _specs[kind]
    except KeyError:
        raise ValueError(f"unknown integration {kind!r}; known: {', '.join(KINDS)}") from None


def specs() -> Iterable[KindSpec]:
    return tuple(_specs.values())
