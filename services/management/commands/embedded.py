"""``manage.py embedded status|stop|url``: look at, stop, or connect to the embedded servers
(PostgreSQL, Redis, and the MQTT broker)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from services import embedded


class Command(BaseCommand):
    help = (
        "The embedded PostgreSQL, Redis and MQTT broker used when DATABASE_URL / REDIS_URL / "
        "MQTT_URL are unset: 'status' shows whether they run, 'stop' stops them all, 'url' "
        "prints the DATABASE_URL."
    )
    # Stopping the servers must work even when the project's checks would fail.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["status", "stop", "url"])

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        if action == "status":
            self._status()
        elif action == "stop":
            self._stop()
        else:
            # Starts PostgreSQL when it is down: whoever asks for the URL wants to connect.
            self.stdout.write(embedded.postgres_url())

    def _status(self) -> None:
        self.stdout.write(f"data dir: {embedded.LOCAL_DIR}")
        for server in embedded.status():
            state = f"running (pid {server.pid})" if server.running else "stopped"
            self.stdout.write(f"{server.name}: {state}")
            self.stdout.write(f"  url:  {server.url}")
            self.stdout.write(f"  data: {server.data_dir}")

    def _stop(self) -> None:
        for name, stopped in (
            ("PostgreSQL", embedded.stop_postgres()),
            ("Redis", embedded.stop_redis()),
            ("MQTT (amqtt)", embedded.stop_mqtt()),
        ):
            self.stdout.write(f"{name}: {'stopped' if stopped else 'was not running'}")
