"""``?token=`` authentication for the WebSocket, inside channels' AuthMiddlewareStack.

A request carrying a token is decided by the token alone (a bad or expired one is refused
even with a valid session cookie); without one, the session's user stands. The consumer
closes an unauthenticated socket with 4401.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from django.contrib.auth.models import AnonymousUser

from realtime.tokens import check_token


class TokenAuthMiddleware(BaseMiddleware):
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        token = token_from_query(scope.get("query_string", b""))
        if token is not None:
            user, outcome = await database_sync_to_async(check_token)(token)
            scope = dict(scope, user=user or AnonymousUser(), auth_outcome=outcome)
        return await super().__call__(scope, receive, send)


def token_from_query(query_string: bytes) -> str | None:
    values = parse_qs(query_string.decode("latin1")).get("token")
    return values[0] if values else None
