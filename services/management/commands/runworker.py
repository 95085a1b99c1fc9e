"""``manage.py runworker``: the event-driven worker (cron now; outbox, timers, integrations later).

This command shadows channels' ``runworker`` because ``services`` precedes ``channels`` in
INSTALLED_APPS.
"""

from __future__ import annotations

import asyncio
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from services.worker import WorkerError, run_once, serve


def _names(value: str) -> list[str]:
    return [name.strip() for name in value.split(",") if name.strip()]


class Command(BaseCommand):
    help = "Run the background worker: scheduled tasks and the other worker components."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--only", type=_names, default=[], help="comma-separated components")
        parser.add_argument("--exclude", type=_names, default=[], help="components to leave out")
        parser.add_argument("--once", action="store_true", help="run every due job once, then exit")

    def handle(
        self, *args: Any, only: list[str], exclude: list[str], once: bool, **opts: Any
    ) -> None:
        try:
            code = asyncio.run(run_once() if once else serve(only, exclude))
        except WorkerError as exc:
            raise CommandError(str(exc)) from None
        if code:
            raise SystemExit(code)
