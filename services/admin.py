"""Admin pages of the cron core: jobs (pause, resume, run now), run history, runtime settings."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from services import describe, run_signals
from services.models import RuntimeSetting, ScheduledJob, TaskRun
from services.registry import UnknownTask, bind_time_zone, discover
from services.runtime_settings import declared

RECENT_RUNS = 20


# --- jobs --------------------------------------------------------------------------------------


class TagFilter(admin.SimpleListFilter):
    title = "tag"
    parameter_name = "tag"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        tag_lists = ScheduledJob.objects.values_list("tags", flat=True)
        return [(tag, tag) for tag in sorted({tag for tags in tag_lists for tag in tags})]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset.filter(tags__contains=[value]) if value else queryset


@admin.register(ScheduledJob)
class ScheduledJobAdmin(admin.ModelAdmin):
    list_display = (
        "name", "schedule", "active", "paused", "next_run", "last_slot_at", "runs_link",
    )  # fmt: skip
    list_filter = ("active", "paused", TagFilter)
    search_fields = ("name", "description")
    actions = ("pause", "resume", "run_now")
    fields = (
        "name", "description", "schedule", "tags", "active", "paused", "next_run",
        "last_slot_at", "run_requested_at", "created_at", "updated_at", "recent_runs",
    )  # fmt: skip
    # Everything but "paused" is synced from the code's registry by the worker.
    readonly_fields = tuple(f for f in fields if f != "paused")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # jobs come from @task registrations, synced at worker start

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Only an inactive job, one by one: deleting a row a worker still schedules would stop
        # it until that worker restarts (so no bulk delete action either).
        return obj is not None and not obj.active and super().has_delete_permission(request, obj)

    @admin.display(description="next run")
    def next_run(self, job: ScheduledJob) -> str:
        """Computed from the registered schedule (pure): the same slot every worker computes."""
        try:
            spec = bind_time_zone(discover().get(job.name), timezone.get_default_timezone())
        except UnknownTask:
            return "not registered"
        view = describe.JobView(paused=job.paused, active=job.active)
        return describe.next_run(spec, view, timezone.now(), timezone.get_default_timezone())

    @admin.display(description="runs")
    def runs_link(self, job: ScheduledJob) -> SafeString:
        url = reverse("admin:services_taskrun_changelist") + f"?job__id__exact={job.pk}"
        return format_html('<a href="{}">runs</a>', url)

    @admin.display(description=f"recent runs (latest {RECENT_RUNS})")
    def recent_runs(self, job: ScheduledJob) -> SafeString:
        runs = job.runs.order_by("-started_at")[:RECENT_RUNS]
        rows = format_html_join(
            "",
            '<tr><td><a href="{}">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>',
            (
                (
                    reverse("admin:services_taskrun_change", args=[run.pk]),
                    f"{run.started_at:%Y-%m-%d %H:%M:%S}",
                    run.source,
                    run.status,
                    describe.duration(run.duration),
                    run.error[:120],
                )
                for run in runs
            ),
        )
        return format_html(
            "<table><tr><th>started</th><th>source</th><th>status</th><th>duration</th>"
            "<th>error</th></tr>{}</table>{}",
            rows,
            self.runs_link(job),
        )

    def save_model(self, request: HttpRequest, obj: ScheduledJob, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        run_signals.announce("edited", [obj.name])  # "paused" is the one field one can edit

    @admin.action(description="Pause selected jobs", permissions=["change"])
    def pause(self, request: HttpRequest, queryset: QuerySet[ScheduledJob]) -> None:
        names = list(queryset.values_list("name", flat=True))
        count = queryset.update(paused=True, updated_at=timezone.now())
        run_signals.announce("paused", names)
        self.message_user(request, f"Paused {count} job(s): their slots are not run until resumed.")

    @admin.action(description="Resume selected jobs", permissions=["change"])
    def resume(self, request: HttpRequest, queryset: QuerySet[ScheduledJob]) -> None:
        names = list(queryset.values_list("name", flat=True))
        count = queryset.update(paused=False, updated_at=timezone.now())
        run_signals.announce("resumed", names)
        self.message_user(request, f"Resumed {count} job(s).")

    @admin.action(description="Run selected jobs now", permissions=["change"])
    def run_now(self, request: HttpRequest, queryset: QuerySet[ScheduledJob]) -> None:
        # The UPDATE fires a trigger that NOTIFYs the worker; it takes each request once.
        count = queryset.filter(active=True).update(run_requested_at=timezone.now())
        self.message_user(
            request,
            f"Asked the worker to run {count} job(s) now: it is notified at once and records "
            "each run as manual (see their runs). Without a running worker they run when it "
            "starts; a task whose enabled_when is false is skipped.",
        )
        inactive = queryset.filter(active=False).count()
        if inactive:
            self.message_user(
                request,
                f"{inactive} inactive job(s) not requested: no worker has them registered.",
                messages.WARNING,
            )


# --- runs --------------------------------------------------------------------------------------


@admin.register(TaskRun)
class TaskRunAdmin(admin.ModelAdmin):
    list_display = (
        "job", "slot", "source", "status", "attempt", "started_at", "run_duration", "worker_id",
    )  # fmt: skip
    list_filter = (("job", admin.RelatedOnlyFieldListFilter), "status", "source")
    list_select_related = ("job",)
    date_hierarchy = "started_at"
    search_fields = ("job__name", "error", "worker_id")
    fields = (
        "job", "slot", "source", "status", "attempt", "worker_id", "started_at", "finished_at",
        "run_duration", "lease_until", "result_json", "error", "traceback_text",
    )  # fmt: skip
    readonly_fields = fields

    # History is written by the worker only: viewable, never added, edited or deleted here.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="duration", ordering="duration")
    def run_duration(self, run: TaskRun) -> str:
        return describe.duration(run.duration)

    @admin.display(description="result")
    def result_json(self, run: TaskRun) -> SafeString:
        return format_html("<pre>{}</pre>", json.dumps(run.result, indent=2, sort_keys=True))

    @admin.display(description="traceback")
    def traceback_text(self, run: TaskRun) -> SafeString | str:
        return format_html("<pre>{}</pre>", run.traceback) if run.traceback else "-"


# --- runtime settings --------------------------------------------------------------------------


class JSONOrTextField(forms.JSONField):
    """JSON when the input parses, else the text itself: an operator types abc, not "abc"."""

    def to_python(self, value: Any) -> Any:
        try:
            return super().to_python(value)
        except ValidationError:
            return value.strip() if isinstance(value, str) else value


class RuntimeSettingForm(forms.ModelForm):
    value = JSONOrTextField(help_text='JSON (30, true, "text"); plain text is taken as text.')

    class Meta:
        model = RuntimeSetting
        fields = ("key", "value")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if "key" in self.fields and "key" not in cleaned:
            return cleaned  # the key field already has its error
        key = cleaned.get("key", self.instance.key)
        known = declared()
        if key not in known:
            listing = ", ".join(sorted(known)) or "(none declared)"
            self.add_error("key", f"unknown setting {key!r}; known settings: {listing}")
        elif "value" in cleaned:
            try:
                cleaned["value"] = known[key].validate(cleaned["value"])
            except ValueError as exc:
                self.add_error("value", str(exc))
        return cleaned


@admin.register(RuntimeSetting)
class RuntimeSettingAdmin(admin.ModelAdmin):
    form = RuntimeSettingForm
    list_display = ("key", "value", "default", "description", "updated_at")
    search_fields = ("key",)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        # Renaming a stored setting would silently reset the old key to its default.
        return ("key", "default", "description") if obj else ("default", "description")

    @admin.display(description="default")
    def default(self, setting: RuntimeSetting) -> str:
        spec = declared().get(setting.key)
        return json.dumps(spec.default) if spec else "-"

    @admin.display(description="description")
    def description(self, setting: RuntimeSetting) -> SafeString | str:
        known = declared()
        if setting.key in known:
            return known[setting.key].description
        # The add form: list every setting one can store.
        return format_html_join(
            "",
            "<p><code>{}</code> (default {}): {}</p>",
            ((d.key, json.dumps(d.default), d.description) for d in known.values()),
        )
