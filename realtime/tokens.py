"""WebSocket tokens: signed, expiring, tied to the user's password.

``make_token(user)`` is ``django.core.signing.dumps({"u": pk, "h": hash})`` with its own salt
and a timestamp; ``check_token`` accepts it for ``REALTIME_TOKEN_MAX_AGE`` seconds (default
3600). ``h`` is part of the user's session auth hash, so changing the password (which logs
out every session) also invalidates every token. Nothing is stored: a token cannot be revoked
before it expires other than by that, or by rotating ``SECRET_KEY``.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import signing

SALT = "realtime.ws-token"
_HASH_CHARS = 20


def max_age() -> int:
    return int(settings.REALTIME_TOKEN_MAX_AGE)


def make_token(user: Any) -> str:
    return signing.dumps({"u": user.pk, "h": user.get_session_auth_hash()[:_HASH_CHARS]}, salt=SALT)


def check_token(token: str) -> tuple[Any | None, str]:
    """``(user, "ok")``, or ``(None, "expired" | "invalid")``. Reads one row."""
    try:
        data = signing.loads(token, salt=SALT, max_age=max_age())
    except signing.SignatureExpired:
        return None, "expired"
    except signing.BadSignature:
        return None, "invalid"
    if not isinstance(data, dict) or "u" not in data or "h" not in data:
        return None, "invalid"
    user = get_user_model()._default_manager.filter(pk=data["u"]).first()
    if user is None or not user.is_active:
        return None, "invalid"
    if user.get_session_auth_hash()[:_HASH_CHARS] != data["h"]:
        return None, "invalid"
    return user, "ok"
