"""``manage.py task_schedule [--count N] [NAME ...]``: the next fire times of tasks."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from services import describe, manual
from services.registry import UnknownTask


class Command(BaseCommand):
    help = "Show the next fire times of the given tasks (default: all), in TIME_ZONE."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("names", nargs="*", metavar="NAME", help="Task names (default: all).")
        parser.add_argument(
            "--count", type=int, default=5, help="Fire times per task (default: 5)."
        )

    def handle(self, *args: Any, names: list[str], count: int, **options: Any) -> None:
        if count < 1:
            raise CommandError(f"--count must be at least 1, got {count}")
        try:
            specs = manual.registered(names)
        except UnknownTask as exc:
            raise CommandError(str(exc)) from None
        now, zone = timezone.now(), manual.local_zone()
        blocks = ["\n".join(describe.upcoming_lines(spec, count, now, zone)) for spec in specs]
        self.stdout.write("\n\n".join(blocks))
