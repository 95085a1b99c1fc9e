"""The Home Assistant and Z-Wave JS clients plug into the wrapper by kind, module and builder;
the periodic Home Assistant sync runs only while it is configured. Their modules live on the
integrations-ws branch: stand-ins with the same names take their place here."""

from __future__ import annotations

import importlib.machinery
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from services.clock import FakeClock
from services.integrations import tasks, ws_settings
from services.integrations.config_spec import EffectiveConfig, spec_for
from services.integrations.models import IntegrationConfig
from services.integrations.wiring import plugged_in


@dataclass(frozen=True)
class HomeAssistantSettings:  # the fields the real one has that the builder fills
    base_url: str
    token: str = field(repr=False)
    verify_tls: bool = True
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    heartbeat_interval: float = 30.0
    auth_retry_interval: float | None = None

    def __post_init__(self) -> None:
        if not self.token:
            raise ValueError("token is required (a long-lived access token)")


@dataclass(frozen=True)
class ZwaveJsSettings:
    url: str
    verify_tls: bool = True
    heartbeat_interval: float = 30.0


class Client:
    def __init__(self, settings: Any, *, clock: Any, report: Any, on_state: Any) -> None:
        self.settings = settings


def stand_in(name: str, **attributes: Any) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None)
    vars(module).update(attributes)
    return module


@pytest.fixture
def ws_modules(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, list[Any]]]:
    synced: dict[str, list[Any]] = {"calls": []}

    @dataclass(frozen=True)
    class KnownState:
        state: str
        attributes: dict[str, Any]

    class Result:
        def as_dict(self) -> dict[str, Any]:
            return {"changed": 0}

    async def sync_states(settings: Any, *, session: Any, on_state: Any, known: Any) -> Result:
        synced["calls"].append((settings, known, on_state))
        return Result()

    modules = {
        "services.integrations.home_assistant": stand_in(
            "services.integrations.home_assistant",
            HomeAssistantClient=Client, HomeAssistantSettings=HomeAssistantSettings,
        ),
        "services.integrations.zwavejs": stand_in(
            "services.integrations.zwavejs", ZwaveJsClient=Client, ZwaveJsSettings=ZwaveJsSettings
        ),
        "services.integrations.ha_sync": stand_in(
            "services.integrations.ha_sync", sync_states=sync_states, KnownState=KnownState
        ),
    }  # fmt: skip
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    yield synced


def effective(kind: str, **values: Any) -> EffectiveConfig:
    return EffectiveConfig(kind, True, True, {**spec_for(kind).defaults(), **values}, "row")


def test_the_builders_fill_the_clients_settings() -> None:
    ha = ws_settings.home_assistant_kwargs(
        effective("home_assistant", url="http://ha:8123", token="t", include=["binary_sensor.*"])
    )
    assert HomeAssistantSettings(**ha) == HomeAssistantSettings(
        "http://ha:8123", "t", include=("binary_sensor.*",), auth_retry_interval=None
    )
    retrying = effective("home_assistant", url="http://ha", token="t", auth_retry_interval=300)
    assert ws_settings.home_assistant_kwargs(retrying)["auth_retry_interval"] == 300.0
    zw = ws_settings.zwavejs_kwargs(effective("zwavejs", url="ws://z:3000", verify_tls=False))
    assert ZwaveJsSettings(**zw) == ZwaveJsSettings("ws://z:3000", verify_tls=False)


@pytest.fixture
def ws_absent(monkeypatch: pytest.MonkeyPatch) -> None:
    """As before the merge of integrations-ws: none of its modules installed."""
    monkeypatch.setattr(ws_settings, "installed", lambda module: False)


@pytest.mark.usefixtures("ws_absent")
def test_nothing_is_plugged_in_without_their_modules() -> None:
    assert plugged_in(None) == []  # type: ignore[arg-type]


def test_installed_clients_register_with_their_builders(ws_modules: Any) -> None:
    types_by_kind = {t.kind: t for t in plugged_in(None)}  # type: ignore[arg-type]
    assert set(types_by_kind) == {"home_assistant", "zwavejs"}
    ha = types_by_kind["home_assistant"]
    settings = ha.build_settings(effective("home_assistant", url="http://ha:8123", token="t"))
    assert settings == HomeAssistantSettings("http://ha:8123", "t")
    client = ha.factory(settings, clock=FakeClock(), report=None, on_state=None)
    assert isinstance(client, Client) and client.settings is settings
    with pytest.raises(ValueError, match="token is required"):
        ha.build_settings(effective("home_assistant", url="http://ha:8123"))


@pytest.mark.django_db
def test_the_sync_runs_only_while_home_assistant_is_configured(ws_modules: Any) -> None:
    assert tasks.home_assistant_active() is False
    row = IntegrationConfig.objects.create(
        kind="home_assistant", settings={"url": "http://ha:8123", "token": "secret-token"}
    )
    assert tasks.home_assistant_active() is True
    row.enabled = False
    row.save()
    assert tasks.home_assistant_active() is False


@pytest.mark.django_db
@pytest.mark.usefixtures("ws_absent")
def test_the_sync_is_inactive_without_the_client() -> None:
    IntegrationConfig.objects.create(
        kind="home_assistant", settings={"url": "http://ha:8123", "token": "secret-token"}
    )
    assert tasks.home_assistant_active() is False  # no ha_sync module


@pytest.mark.django_db
def test_the_sync_hands_the_stored_states_and_settings_over(ws_modules: Any) -> None:
    from alarm.models import Entity

    IntegrationConfig.objects.create(
        kind="home_assistant", settings={"url": "http://ha:8123", "token": "secret-token"}
    )
    Entity.objects.create(entity_id="binary_sensor.door", state="on", source="home_assistant")
    Entity.objects.create(entity_id="zigbee2mqtt.other", state="off", source="zigbee2mqtt")
    assert tasks.sync_entity_states() == {"changed": 0}
    [(settings, known, on_state)] = ws_modules["calls"]
    assert settings == HomeAssistantSettings("http://ha:8123", "secret-token")
    assert list(known) == ["binary_sensor.door"] and known["binary_sensor.door"].state == "on"
    assert callable(on_state)


@pytest.mark.django_db
def test_the_sync_skips_when_the_configuration_went_away(ws_modules: Any) -> None:
    assert tasks.sync_entity_states() == {"skipped": "Home Assistant is not configured"}
    assert ws_modules["calls"] == []
