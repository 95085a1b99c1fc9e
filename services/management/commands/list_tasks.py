"""``manage.py list_tasks [--tag T]``: every registered task, its schedule, state and last run."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from services import describe, manual


class Command(BaseCommand):
    help = "List the registered tasks: schedule, enabled, paused, next run, last run."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tag", help="Only tasks with this tag.")

    def handle(self, *args: Any, tag: str | None, **options: Any) -> None:
        specs = manual.registered(tag=tag)
        if not specs:
            tags = ", ".join(manual.known_tags()) or "(none)"
            self.stdout.write(f"no tasks tagged {tag!r}; known tags: {tags}")
            return
        now, zone = timezone.now(), manual.local_zone()
        jobs = manual.job_views([spec.name for spec in specs])
        rows = [
            describe.task_row(spec, manual.enabled_state(spec), jobs.get(spec.name), now, zone)
            for spec in specs
        ]
        self.stdout.write(describe.table(describe.TASK_COLUMNS, rows))
