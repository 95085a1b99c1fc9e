from __future__ import annotations

from django.urls import path

from realtime import views

app_name = "realtime"

urlpatterns = [
    path("", views.status_page, name="status"),
    path("status/summary.json", views.status_summary, name="summary"),
    path("api/ws-token/", views.ws_token, name="ws_token"),
]
