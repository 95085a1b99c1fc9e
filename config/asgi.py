"""ASGI entry point for daphne: HTTP through Django, WebSockets through channels.

WebSockets: the Origin must name a host in ALLOWED_HOSTS (else the handshake is refused),
then the session cookie or ``?token=`` authenticates (realtime.auth); the consumer closes an
unauthenticated socket with 4401.
"""

from __future__ import annotations

import os

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# daphne serves no static files itself; the admin's and the status page's are served here.
django_asgi_app = ASGIStaticFilesHandler(get_asgi_application())

# These need Django set up first.
from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from realtime.auth import TokenAuthMiddleware  # noqa: E402
from realtime.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(TokenAuthMiddleware(URLRouter(websocket_urlpatterns)))
        ),
    }
)
