"""``manage.py run_task NAME [--arg key=value ...] [--force]``: run a task now, in this process.

The run is recorded as a TaskRun with source "manual". Exit status 1 when the task fails, times
out, or is refused (already running, disabled: ``--force`` overrides both).
"""

from __future__ import annotations

import asyncio
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from services import describe, manual
from services.registry import UnknownTask


class Command(BaseCommand):
    help = "Run one registered task now and record it as a manual run."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", metavar="NAME", help="The task's name (see list_tasks).")
        parser.add_argument(
            "--arg",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="A keyword argument for the task; VALUE is JSON when it parses, else text.",
        )
        parser.add_argument(
            "--force",
            action="store_true",
            help="Run even if the task is running elsewhere or disabled by its enabled_when.",
        )

    def handle(self, *args: Any, name: str, arg: list[str], force: bool, **options: Any) -> None:
        try:
            kwargs = manual.parse_kwargs(arg)
            (spec,) = manual.registered([name])
            manual.check_arguments(spec, kwargs)
        except (ValueError, UnknownTask) as exc:
            raise CommandError(str(exc)) from None
        try:
            run = asyncio.run(manual.run_by_hand(spec, kwargs, force=force))
        except manual.RunRefused as exc:
            raise CommandError(str(exc)) from None
        out, err = describe.run_report(spec.name, run.run_id, run.outcome, run.seconds)
        self.stdout.write(out)
        if run.outcome.status != "success":
            self.stderr.write(err)
            raise CommandError(f"task {spec.name} {run.outcome.status} (run {run.run_id})")
