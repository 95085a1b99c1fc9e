"""The status page, the jobs/runs summary it reads after each connect, and WebSocket tokens."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from realtime import tokens
from realtime.summary import summary, summary_message

INTEGRATION_LABELS = [
    ("mqtt", "MQTT"),
    ("home_assistant", "Home Assistant"),
    ("zwavejs", "Z-Wave JS"),
    ("zigbee2mqtt", "Zigbee2MQTT"),
    ("frigate", "Frigate"),
]


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
    """The jobs and runs as a ``task_runs`` message (the page reads it after each connect)."""
    return JsonResponse(summary_message())


@never_cache
@login_required
@require_GET
def ws_token(request: HttpRequest) -> JsonResponse:
    """A token for ``/ws/alarm/?token=...`` (for clients without the session cookie)."""
    return JsonResponse({"token": tokens.make_token(request.user), "expires_in": tokens.max_age()})
