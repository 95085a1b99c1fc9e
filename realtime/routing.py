from __future__ import annotations

from django.urls import path

from realtime.consumers import AlarmConsumer

websocket_urlpatterns = [
    path("ws/alarm/", AlarmConsumer.as_asgi()),
]
