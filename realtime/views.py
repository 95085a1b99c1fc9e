"""The status page, the jobs/runs summary it refreshes, and WebSocket tokens."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.db.models import F
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from realtime import tokens
from services.models import ScheduledJob, TaskRun

INTEGRATION_LABELS = [
    ("mqtt", "MQTT"),
    ("home_assistant", "Home Assistant"),
    ("zwavejs", "Z-Wave JS"),
    ("zigbee2mqtt", "Zigbee2MQTT"),
    ("frigate", "Frigate"),
]
NEXT_JOBS = 10
RECENT_RUNS = 15


def summary() -> dict[str, Any]:
    """The next scheduled jobs and the latest task runs (two queries)."""
    jobs = (
        ScheduledJob.objects.filter(active=True)
        .order_by(F("next_run_at").asc(nulls_last=True), "name")
        .values("name", "schedule", "paused", "next_run_at")[:NEXT_JOBS]
    )
    runs = TaskRun.objects.select_related("job").order_by("-started_at")[:RECENT_RUNS]
    return {
        "jobs": [
            {**job, "next_run_at": job["next_run_at"].isoformat() if job["next_run_at"] else None}
            for job in jobs
        ],
        "runs": [
            {
                "task": run.job.name,
                "status": run.status,
                "source": run.source,
                "started_at": run.started_at.isoformat(),
                "duration": run.duration,
                "error": run.error,
            }
            for run in runs
        ],
    }


@never_cache
@login_required
@require_GET
def status_page(request: HttpRequest) -> HttpResponse:
    context = {"summary": summary(), "integrations": INTEGRATION_LABELS}
    return render(request, "realtime/status.html", context)


@never_cache
@login_required
@require_GET
def status_summary(request: HttpRequest) -> JsonResponse:
    return JsonResponse(summary())


@never_cache
@login_required
@require_GET
def ws_token(request: HttpRequest) -> JsonResponse:
    """A token for ``/ws/alarm/?token=...`` (for clients without the session cookie)."""
    return JsonResponse({"token": tokens.make_token(request.user), "expires_in": tokens.max_age()})
