"""Slack ``chat.postMessage`` with a bot token.

Config: ``token`` (secret), ``channel``, ``base_url`` (default https://slack.com/api).
Slack answers HTTP 200 with ``{"ok": false, "error": ...}`` for most errors: ``ratelimited``
and Slack-side outages are transient, everything else (invalid_auth, channel_not_found, ...)
needs a config change and is permanent.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from multidict import CIMultiDictProxy

from notifications.policy import RATE_LIMITED, Failure, parse_retry_after
from notifications.providers.base import (
    ConfigErrors,
    Message,
    Outgoing,
    Provider,
    base_headers,
    join_url,
    text_field,
    url_field,
)

DEFAULT_BASE_URL = "https://slack.com/api"
_RATE_LIMITED = frozenset({"ratelimited", "rate_limited"})
_SLACK_OUTAGE = frozenset(
    {"internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)


class SlackProvider(Provider):
    type = "slack"
    secret_fields = ("token",)

    def check_fields(self, config: Mapping[str, Any], errors: ConfigErrors) -> None:
        text_field(config, "token", errors, required=True)
        text_field(config, "channel", errors, required=True)
        url_field(config, "base_url", errors, required=False)

    def build(self, config: Mapping[str, Any], message: Message) -> Outgoing:
        base = (config.get("base_url") or DEFAULT_BASE_URL).strip()
        headers = {"Authorization": f"Bearer {config['token'].strip()}", **base_headers(message)}
        text = f"*{message.title}*\n{message.message}" if message.title else message.message
        payload = {"channel": config["channel"].strip(), "text": text}
        url = join_url(base, "chat.postMessage")
        return Outgoing("POST", url, headers, json=payload, interpret=interpret_answer)


def interpret_answer(
    status: int, body: bytes, headers: CIMultiDictProxy[str], now: datetime
) -> Failure | None:
    """The failure hidden in a 2xx answer: ``ok: false``, or a body that is not Slack's JSON."""
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    if not isinstance(answer, dict) or "ok" not in answer:
        # Not Slack talking (a proxy or captive page?): worth another try, bounded by attempts.
        snippet = body[:200].decode("utf-8", "replace")
        return Failure("transient", "invalid_response", f"HTTP {status}, not Slack JSON: {snippet}")
    if answer["ok"] is True:
        return None
    error = str(answer.get("error") or "unknown_error")
    message = f"Slack error: {error}"
    if error in _RATE_LIMITED:
        retry_after = parse_retry_after(headers.get("Retry-After"), now)
        return Failure("transient", RATE_LIMITED, message, retry_after)
    if error in _SLACK_OUTAGE:
        return Failure("transient", f"slack_{error}", message)
    return Failure("permanent", f"slack_{error}"[:64], message)


PROVIDER = SlackProvider()
