"""Parse configuration from environment variables.

Pure functions: they take the values as arguments so they can be tested without touching
``os.environ``. ``config.settings`` calls them with the real environment.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit


class ConfigError(ValueError):
    """A configuration value is present but cannot be used."""


_POSTGRES_SCHEMES = {"postgres", "postgresql", "pgsql", "postgresql+psycopg"}


def database_from_url(url: str) -> dict[str, Any]:
    """Turn ``postgresql://user:pass@host:port/name?opt=v`` into a Django DATABASES entry.

    Only PostgreSQL is accepted: the worker is woken by LISTEN/NOTIFY, which SQLite and the
    other backends do not have. A unix-socket directory may be given as ``?host=/path``.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme.startswith("sqlite"):
        raise ConfigError(
            "DATABASE_URL points at SQLite, but this project needs PostgreSQL (the worker is "
            "woken by LISTEN/NOTIFY). Unset DATABASE_URL to use the embedded PostgreSQL, or "
            "set it to postgresql://user:password@host:5432/dbname."
        )
    if scheme not in _POSTGRES_SCHEMES:
        raise ConfigError(
            f"DATABASE_URL scheme {parts.scheme!r} is not supported; use postgresql://..."
        )
    options = dict(parse_qsl(parts.query))
    host = options.pop("host", None) or (unquote(parts.hostname) if parts.hostname else "")
    name = unquote(parts.path.lstrip("/"))
    if not name:
        raise ConfigError("DATABASE_URL has no database name (postgresql://host/NAME)")
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": name,
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": host,
        "PORT": str(parts.port or ""),
        "OPTIONS": options,
    }


def redis_url_ok(url: str) -> str:
    """Check that a REDIS_URL is one redis-py understands; return it unchanged."""
    scheme = urlsplit(url).scheme.lower()
    if scheme not in {"redis", "rediss", "unix"}:
        raise ConfigError(f"REDIS_URL scheme {scheme!r} is not supported; use redis://host:6379/0")
    return url


def mqtt_url_ok(url: str) -> str:
    """Check that an MQTT_URL is ``mqtt://``/``mqtts://`` with a host; return it unchanged."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in {"mqtt", "mqtts", "tcp", "ssl"} or not parts.hostname:
        raise ConfigError(f"MQTT_URL {url!r} must look like mqtt://user:pass@host:1883")
    return url


def parse_bool(value: str | None, *, default: bool = False) -> bool:
    if value is None or value == "":
        return default
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"expected a boolean (true/false), got {value!r}")


def parse_int(name: str, value: str | None, *, default: int, minimum: int | None = None) -> int:
    if value is None or value.strip() == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {value!r}") from None
    if minimum is not None and number < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {number}")
    return number


def parse_float(name: str, value: str | None, *, default: float) -> float:
    if value is None or value.strip() == "":
        return default
    try:
        return float(value)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {value!r}") from None
