"""Table tests of ``config.settings.env``: the parsing of every environment variable."""

from __future__ import annotations

from typing import Any

import pytest

from config.settings.env import (
    ConfigError,
    database_from_url,
    mqtt_url_ok,
    parse_bool,
    parse_float,
    parse_int,
    redis_url_ok,
)

# --- DATABASE_URL -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        pytest.param(
            "postgresql://alice:secret@db.example:6543/alarm",
            {"NAME": "alarm", "USER": "alice", "PASSWORD": "secret", "HOST": "db.example"}
            | {"PORT": "6543", "OPTIONS": {}},
            id="full",
        ),
        pytest.param(
            "postgres://db/alarm",
            {"NAME": "alarm", "USER": "", "PASSWORD": "", "HOST": "db", "PORT": ""},
            id="postgres-scheme-no-credentials-no-port",
        ),
        pytest.param("pgsql://h/n", {"NAME": "n", "HOST": "h"}, id="pgsql-scheme"),
        pytest.param("postgresql+psycopg://h/n", {"NAME": "n"}, id="sqlalchemy-style-scheme"),
        pytest.param("POSTGRESQL://h/n", {"NAME": "n"}, id="scheme-case-insensitive"),
        pytest.param(
            "postgresql://postgres@/app?host=/tmp/pg%20socket",
            {"NAME": "app", "USER": "postgres", "HOST": "/tmp/pg socket", "OPTIONS": {}},
            id="socket-dir-as-host-param",
        ),
        pytest.param(
            "postgresql://u@ignored/app?host=/run/pg",
            {"HOST": "/run/pg"},
            id="host-param-wins-over-netloc",
        ),
        pytest.param(
            "postgresql://u:p%40ss%3Aw%2Frd%25@h/n",
            {"USER": "u", "PASSWORD": "p@ss:w/rd%"},
            id="percent-encoded-password",
        ),
        pytest.param("postgresql://us%40er@h/n", {"USER": "us@er"}, id="percent-encoded-user"),
        pytest.param("postgresql://h/my%20db", {"NAME": "my db"}, id="percent-encoded-db-name"),
        pytest.param(
            "postgresql://h/n?sslmode=require&connect_timeout=5",
            {"OPTIONS": {"sslmode": "require", "connect_timeout": "5"}},
            id="query-params-become-options",
        ),
        pytest.param("postgresql://[::1]:5433/n", {"HOST": "::1", "PORT": "5433"}, id="ipv6"),
    ],
)
def test_database_from_url(url: str, expected: dict[str, Any]) -> None:
    database = database_from_url(url)
    assert database["ENGINE"] == "django.db.backends.postgresql"
    assert {key: database[key] for key in expected} == expected


@pytest.mark.parametrize(
    ("url", "message_part"),
    [
        pytest.param("sqlite:///db.sqlite3", "PostgreSQL", id="sqlite"),
        pytest.param("sqlite3:////abs/db", "PostgreSQL", id="sqlite3"),
        pytest.param("SQLITE:///db", "PostgreSQL", id="sqlite-uppercase"),
        pytest.param("mysql://u@h/n", "'mysql' is not supported", id="mysql"),
        pytest.param("http://h/n", "'http' is not supported", id="http"),
        pytest.param("localhost/alarm", "is not supported", id="no-scheme"),
        pytest.param("postgresql://h", "no database name", id="no-db-name"),
        pytest.param("postgresql://h/", "no database name", id="empty-db-name"),
        pytest.param("postgresql://u@/?host=/run/pg", "no database name", id="socket-no-db"),
    ],
)
def test_database_from_url_rejects(url: str, message_part: str) -> None:
    with pytest.raises(ConfigError, match=message_part):
        database_from_url(url)


def test_sqlite_message_says_how_to_fix() -> None:
    with pytest.raises(ConfigError) as caught:
        database_from_url("sqlite:///db.sqlite3")
    message = str(caught.value)
    assert "Unset DATABASE_URL" in message
    assert "postgresql://" in message


# --- REDIS_URL and MQTT_URL ---------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0",
        "rediss://user:pw@cache.example:6380/1",
        "unix:///tmp/redis.sock?db=0",
        "REDIS://h:6379/0",
    ],
)
def test_redis_url_accepted_unchanged(url: str) -> None:
    assert redis_url_ok(url) == url


@pytest.mark.parametrize(
    "url", ["http://h:6379", "memcached://h", "127.0.0.1:6379", "", "postgresql://h/n"]
)
def test_redis_url_rejected(url: str) -> None:
    with pytest.raises(ConfigError, match="REDIS_URL"):
        redis_url_ok(url)


@pytest.mark.parametrize(
    "url",
    [
        "mqtt://127.0.0.1:1883",
        "mqtts://user:pw@broker.example:8883",
        "tcp://broker",
        "ssl://broker:8883",
        "MQTT://broker",
    ],
)
def test_mqtt_url_accepted_unchanged(url: str) -> None:
    assert mqtt_url_ok(url) == url


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("http://broker:1883", id="wrong-scheme"),
        pytest.param("mqtt://", id="no-host"),
        pytest.param("mqtt:///topic", id="path-only"),
        pytest.param("broker:1883", id="no-scheme"),
        pytest.param("", id="empty"),
    ],
)
def test_mqtt_url_rejected(url: str) -> None:
    with pytest.raises(ConfigError, match="MQTT_URL"):
        mqtt_url_ok(url)


# --- Scalars ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "default", "expected"),
    [
        (None, False, False),
        (None, True, True),
        ("", True, True),
        ("1", False, True),
        ("true", False, True),
        ("TRUE", False, True),
        (" yes ", False, True),
        ("on", False, True),
        ("0", True, False),
        ("false", True, False),
        ("No", True, False),
        ("off", True, False),
    ],
)
def test_parse_bool(value: str | None, default: bool, expected: bool) -> None:
    assert parse_bool(value, default=default) is expected


@pytest.mark.parametrize("value", ["2", "maybe", "y", "enabled", "tru"])
def test_parse_bool_rejects(value: str) -> None:
    with pytest.raises(ConfigError, match="boolean"):
        parse_bool(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, 7), ("", 7), ("  ", 7), ("0", 0), ("42", 42), ("-3", -3), (" 8001 ", 8001)],
)
def test_parse_int(value: str | None, expected: int) -> None:
    assert parse_int("WORKER_HEALTH_PORT", value, default=7) == expected


@pytest.mark.parametrize("value", ["1.5", "abc", "8001x", "1e3"])
def test_parse_int_rejects_naming_the_variable(value: str) -> None:
    with pytest.raises(ConfigError, match=r"WORKER_HEALTH_PORT must be an integer, got '"):
        parse_int("WORKER_HEALTH_PORT", value, default=0)


@pytest.mark.parametrize(("value", "ok"), [("1", True), ("4", True), ("0", False), ("-2", False)])
def test_parse_int_minimum(value: str, ok: bool) -> None:
    if ok:
        assert parse_int("ALARM_TIMER_LANES", value, default=2, minimum=1) == int(value)
    else:
        with pytest.raises(ConfigError, match=r"ALARM_TIMER_LANES must be at least 1, got -?\d"):
            parse_int("ALARM_TIMER_LANES", value, default=2, minimum=1)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, 30.0), ("", 30.0), ("2", 2.0), ("0.25", 0.25), ("1e2", 100.0), (" 5.5 ", 5.5)],
)
def test_parse_float(value: str | None, expected: float) -> None:
    assert parse_float("WORKER_SHUTDOWN_GRACE", value, default=30.0) == expected


@pytest.mark.parametrize("value", ["abc", "1,5", "5s"])
def test_parse_float_rejects_naming_the_variable(value: str) -> None:
    with pytest.raises(ConfigError, match=r"WORKER_SHUTDOWN_GRACE must be a number, got '"):
        parse_float("WORKER_SHUTDOWN_GRACE", value, default=0.0)


def test_config_error_is_a_value_error() -> None:
    # Callers that only know ValueError (argparse-style code) still catch it.
    assert issubclass(ConfigError, ValueError)
