"""Each provider against the local fake of its API: request shape, headers (Idempotency-Key,
auth), how answers are read (Slack ``ok: false``, Discord 204), and error classification."""

from __future__ import annotations

import asyncio
import base64
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest

from notifications.models import ProviderType
from notifications.providers import PROVIDER_TYPES, get_provider
from notifications.providers.base import Message, SendResult, failure_from_exception
from notifications.ssrf import BlockedURL, make_session
from tests.fakes.provider_servers import FakeProviders, FakeResponse, running_fake_providers

NOW = datetime(2025, 6, 2, 12, 0, 0, tzinfo=UTC)
MESSAGE = Message("Alarm", "Front door opened", {"zone": "front", "count": 3}, "idem-123", 42)
PATH_PREFIX = {
    "webhook": "/webhook",
    "slack": "/slack",
    "discord": "/discord",
    "pushbullet": "/pushbullet",
    "home_assistant": "/ha",
}


@pytest.fixture
async def fake() -> AsyncIterator[FakeProviders]:
    async with running_fake_providers() as server:
        yield server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with make_session(allow_loopback=True, block_private=False, limit=10) as made:
        yield made


async def send(
    session: aiohttp.ClientSession,
    provider_type: str,
    config: dict[str, Any],
    message: Message = MESSAGE,
) -> SendResult:
    return await get_provider(provider_type).send(session, config, message, NOW)


# --- registry ------------------------------------------------------------------------------------


def test_every_model_type_has_a_provider() -> None:
    assert list(PROVIDER_TYPES) == [choice.value for choice in ProviderType]
    for provider_type in PROVIDER_TYPES:
        assert get_provider(provider_type).type == provider_type


def test_unknown_type_names_the_known_ones() -> None:
    with pytest.raises(KeyError) as raised:
        get_provider("telegram")
    assert str(raised.value) == (
        "unknown provider type 'telegram'; known: webhook, slack, discord, pushbullet, "
        "home_assistant"
    )


@pytest.mark.parametrize(
    ("provider_type", "secrets"),
    [
        ("webhook", ("token", "password", "header_value")),
        ("slack", ("token",)),
        ("discord", ("url",)),  # the webhook URL embeds its token
        ("pushbullet", ("token",)),
        ("home_assistant", ("token",)),
    ],
)
def test_secret_fields(provider_type: str, secrets: tuple[str, ...]) -> None:
    assert get_provider(provider_type).secret_fields == secrets


# --- request shapes ----------------------------------------------------------------------------


@pytest.mark.parametrize("provider_type", list(PATH_PREFIX))
async def test_every_request_carries_the_idempotency_key(
    fake: FakeProviders, session: aiohttp.ClientSession, provider_type: str
) -> None:
    result = await send(session, provider_type, fake.config_for(provider_type))
    assert result.ok, result.detail
    [request] = fake.requests
    assert request.path.startswith(PATH_PREFIX[provider_type])
    assert request.headers["Idempotency-Key"] == "idem-123"


async def test_webhook_default_json_post(
    fake: FakeProviders, session: aiohttp.ClientSession
) -> None:
    result = await send(session, "webhook", fake.config_for("webhook"))
    assert (result.ok, result.status, result.failure) == (True, 200, None)
    [request] = fake.requests
    assert (request.method, request.path) == ("POST", "/webhook")
    assert request.headers["Content-Type"].startswith("application/json")
    assert "Authorization" not in request.headers
    assert request.json == {
        "title": "Alarm",
        "message": "Front door opened",
        "data": {"zone": "front", "count": 3},
        "idempotency_key": "idem-123",
        "delivery_id": 42,
    }


async def test_webhook_put_form(fake: FakeProviders, session: aiohttp.ClientSession) -> None:
    config = fake.config_for("webhook", method="PUT", format="form")
    assert (await send(session, "webhook", config)).ok
    [request] = fake.requests
    assert request.method == "PUT"
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert request.form == {
        "title": "Alarm",
        "message": "Front door opened",
        "data": '{"zone":"front","count":3}',
        "idempotency_key": "idem-123",
        "delivery_id": "42",
    }


@pytest.mark.parametrize(
    ("auth", "header", "value"),
    [
        (
            {"auth": "basic", "username": "alarm", "password": "pä ss"},
            "Authorization",
            "Basic " + base64.b64encode("alarm:pä ss".encode()).decode(),
        ),
        ({"auth": "basic", "username": "alarm"}, "Authorization", "Basic YWxhcm06"),
        ({"auth": "bearer", "token": " tok-1 "}, "Authorization", "Bearer tok-1"),
        ({"auth": "header", "header_name": "X-Api-Key", "header_value": "k1"}, "X-Api-Key", "k1"),
    ],
)
async def test_webhook_auth(
    fake: FakeProviders,
    session: aiohttp.ClientSession,
    auth: dict[str, str],
    header: str,
    value: str,
) -> None:
    assert (await send(session, "webhook", fake.config_for("webhook", **auth))).ok
    [request] = fake.requests
    assert request.headers.getall(header) == [value]


async def test_webhook_custom_headers_cannot_override_auth_or_the_key(
    fake: FakeProviders, session: aiohttp.ClientSession
) -> None:
    headers = {"X-Source": "alarm", "authorization": "custom", "idempotency-key": "forged"}
    config = fake.config_for("webhook", auth="bearer", token="t", headers=headers)
    assert (await send(session, "webhook", config)).ok
    [request] = fake.requests
    assert request.headers["X-Source"] == "alarm"
    assert request.headers.getall("Authorization") == ["Bearer t"]
    assert request.headers.getall("Idempotency-Key") == ["idem-123"]


@pytest.mark.parametrize(
    ("body_format", "expected"),
    [
        (
            "json",
            {"text": "Alarm: Front door opened", "zone": "front", "count": 3, "raw": "{braces}",
             "all": {"zone": "front", "count": 3}, "key": "idem-123 #42"},
        ),
        (
            "form",
            {"text": "Alarm: Front door opened", "zone": "front", "count": "3", "raw": "{braces}",
             "all": '{"zone":"front","count":3}', "key": "idem-123 #42"},
        ),
    ],
)  # fmt: skip
async def test_webhook_body_template(
    fake: FakeProviders, session: aiohttp.ClientSession, body_format: str, expected: dict[str, Any]
) -> None:
    template = {
        "text": "{title}: {message}",
        "zone": "{data[zone]}",
        "count": "{data[count]}",  # a lone placeholder keeps the JSON type
        "raw": "{{braces}}",
        "all": "{data}",
        "key": "{idempotency_key} #{delivery_id}",
    }
    config = fake.config_for("webhook", format=body_format, body_template=template)
    assert (await send(session, "webhook", config)).ok
    [request] = fake.requests
    assert (request.json if body_format == "json" else request.form) == expected


async def test_webhook_template_missing_key_is_permanent_and_sends_nothing(
    fake: FakeProviders, session: aiohttp.ClientSession
) -> None:
    config = fake.config_for("webhook", body_template={"where": "{data[room]}"})
    result = await send(session, "webhook", config)
    assert not result.ok and result.failure is not None
    assert (result.failure.kind, result.failure.code) == ("permanent", "template_error")
    assert "room" in result.failure.message
    assert fake.requests == []


@pytest.mark.parametrize(
    ("title", "text"), [("Alarm", "*Alarm*\nFront door opened"), ("", "Front door opened")]
)
async def test_slack_post_message(
    fake: FakeProviders, session: aiohttp.ClientSession, title: str, text: str
) -> None:
    message = Message(title, "Front door opened", {}, "idem-123", 42)
    result = await send(session, "slack", fake.config_for("slack"), message)
    assert (result.ok, result.status) == (True, 200)
    [request] = fake.requests
    assert (request.method, request.path) == ("POST", "/slack/api/chat.postMessage")
    assert request.headers["Authorization"] == "Bearer xoxb-test"
    assert request.json == {"channel": "#alarm", "text": text}


def slack_error(error: str) -> dict[str, Any]:
    return {"ok": False, "error": error}


@pytest.mark.parametrize(
    ("answer", "headers", "kind", "code", "retry_after"),
    [
        (slack_error("ratelimited"), {"Retry-After": "17"}, "transient", "rate_limited", 17.0),
        (slack_error("internal_error"), {}, "transient", "slack_internal_error", None),
        (slack_error("channel_not_found"), {}, "permanent", "slack_channel_not_found", None),
        (slack_error("invalid_auth"), {}, "permanent", "slack_invalid_auth", None),
        ({"ok": False}, {}, "permanent", "slack_unknown_error", None),
        ({"ok": "yes"}, {}, "permanent", "slack_unknown_error", None),
        ({"channel": "C1"}, {}, "transient", "invalid_response", None),
        ("<html>captive portal</html>", {}, "transient", "invalid_response", None),
    ],
)  # fmt: skip
async def test_slack_reads_errors_from_a_200(
    fake: FakeProviders,
    session: aiohttp.ClientSession,
    answer: Any,
    headers: dict[str, str],
    kind: str,
    code: str,
    retry_after: float | None,
) -> None:
    body = answer if isinstance(answer, str) else None
    json_body = None if isinstance(answer, str) else answer
    fake.respond("/slack", [FakeResponse(200, json=json_body, body=body, headers=headers)])
    result = await send(session, "slack", fake.config_for("slack"))
    assert (result.ok, result.status) == (False, 200)
    assert result.failure is not None
    assert (result.failure.kind, result.failure.code) == (kind, code)
    assert result.failure.retry_after == retry_after


async def test_slack_missing_token_is_refused_by_the_fake_too(
    fake: FakeProviders, session: aiohttp.ClientSession
) -> None:
    # The provider never sends without a token; the fake's own check proves it reads it.
    assert (await send(session, "slack", fake.config_for("slack"))).ok
    async with session.post(f"{fake.url}/slack/api/chat.postMessage", json={}) as response:
        assert (await response.json())["error"] == "not_authed"


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({}, {"content": "**Alarm**\nFront door opened", "allowed_mentions": {"parse": []}}),
        (
            {"mode": "embed", "username": "Alarm panel"},
            {"embeds": [{"title": "Alarm", "description": "Front door opened"}],
             "username": "Alarm panel", "allowed_mentions": {"parse": []}},
        ),
    ],
)  # fmt: skip
async def test_discord_webhook_204_is_success(
    fake: FakeProviders, session: aiohttp.ClientSession, extra: dict[str, str], expected: Any
) -> None:
    result = await send(session, "discord", fake.config_for("discord", **extra))
    assert (result.ok, result.status, result.failure) == (True, 204, None)
    [request] = fake.requests
    assert (request.method, request.path) == ("POST", "/discord/webhooks/123/discord-token")
    assert request.json == expected


async def test_discord_long_content_is_cut_to_its_limit(
    fake: FakeProviders, session: aiohttp.ClientSession
) -> None:
    message = Message("", "x" * 5000, {}, "idem-123", 1)
    assert (await send(session, "discord", fake.config_for("discord"), message)).ok
    content = fake.requests[0].json["content"]
    assert len(content) == 2000 and content.endswith("…")


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({}, {"type": "note", "title": "Alarm", "body": "Front door opened", "guid": "idem-123"}),
        (
            {"type": "link", "url": "https://panel.example/events/9", "device_iden": "dev1"},
            {"type": "link", "title": "Alarm", "body": "Front door opened", "guid": "idem-123",
             "url": "https://panel.example/events/9", "device_iden": "dev1"},
        ),
    ],
)  # fmt: skip
async def test_pushbullet_push(
    fake: FakeProviders, session: aiohttp.ClientSession, extra: dict[str, str], expected: Any
) -> None:
    result = await send(session, "pushbullet", fake.config_for("pushbullet", **extra))
    assert (result.ok, result.status) == (True, 200)
    [request] = fake.requests
    assert (request.method, request.path) == ("POST", "/pushbullet/v2/pushes")
    assert request.headers["Access-Token"] == "o.test-token"
    assert "Authorization" not in request.headers
    assert request.json == expected


@pytest.mark.parametrize(
    ("service", "title", "path", "expected"),
    [
        ("mobile_app_test", "Alarm", "/ha/api/services/notify/mobile_app_test",
         {"title": "Alarm", "message": "Front door opened", "data": {"zone": "front"}}),
        ("notify.mobile_app_x", "", "/ha/api/services/notify/mobile_app_x",
         {"message": "Front door opened", "data": {"zone": "front"}}),
    ],
)  # fmt: skip
async def test_home_assistant_notify_service(
    fake: FakeProviders,
    session: aiohttp.ClientSession,
    service: str,
    title: str,
    path: str,
    expected: Any,
) -> None:
    message = Message(title, "Front door opened", {"zone": "front"}, "idem-123", 42)
    config = fake.config_for("home_assistant", service=service)
    assert (await send(session, "home_assistant", config, message)).ok
    [request] = fake.requests
    assert (request.method, request.path) == ("POST", path)
    assert request.headers["Authorization"] == "Bearer ha-token"
    assert request.json == expected


# --- error classification ------------------------------------------------------------------------


@pytest.mark.parametrize("provider_type", list(PATH_PREFIX))
@pytest.mark.parametrize(
    ("status", "headers", "kind", "code", "retry_after"),
    [
        (500, {}, "transient", "http_500", None),
        (502, {}, "transient", "http_502", None),
        (503, {"Retry-After": "12"}, "transient", "http_503", 12.0),
        (408, {}, "transient", "http_408", None),
        (429, {"Retry-After": "Mon, 02 Jun 2025 12:02:00 GMT"}, "transient", "rate_limited", 120.0),
        (429, {}, "transient", "rate_limited", None),
        (400, {}, "permanent", "http_400", None),
        (401, {}, "permanent", "http_401", None),
        (403, {}, "permanent", "http_403", None),
        (404, {}, "permanent", "http_404", None),
        (301, {"Location": "http://127.0.0.1:9/elsewhere"}, "permanent", "http_301", None),
    ],
)
async def test_http_errors_are_classified(
    fake: FakeProviders,
    session: aiohttp.ClientSession,
    provider_type: str,
    status: int,
    headers: dict[str, str],
    kind: str,
    code: str,
    retry_after: float | None,
) -> None:
    fake.respond(PATH_PREFIX[provider_type], [FakeResponse(status, body="nope", headers=headers)])
    result = await send(session, provider_type, fake.config_for(provider_type))
    assert (result.ok, result.status) == (False, status)
    assert result.failure is not None
    assert (result.failure.kind, result.failure.code) == (kind, code)
    assert result.failure.retry_after == retry_after
    assert len(fake.requests) == 1  # a redirect is not followed


async def test_each_attempt_reads_its_own_answer(
    fake: FakeProviders, session: aiohttp.ClientSession
) -> None:
    fake.respond("/ha", [FakeResponse(503), FakeResponse(503)])
    config = fake.config_for("home_assistant")
    results = [await send(session, "home_assistant", config) for _ in range(3)]
    assert [(r.ok, r.status) for r in results] == [(False, 503), (False, 503), (True, 200)]
    assert len(await fake.wait_for(3)) == 3


async def test_timeout_is_transient(fake: FakeProviders) -> None:
    never = asyncio.Event()  # the fake holds the answer until the server closes
    fake.respond("/webhook", [FakeResponse(release=never)])
    async with make_session(
        allow_loopback=True, block_private=False, limit=2, total_timeout=0.2
    ) as session:
        result = await send(session, "webhook", fake.config_for("webhook"))
    assert result.failure is not None
    assert (result.ok, result.status, result.failure.code) == (False, None, "timeout")
    assert result.failure.kind == "transient"


async def test_refused_connection_is_transient(session: aiohttp.ClientSession) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago, now closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = await send(session, "webhook", {"url": f"http://127.0.0.1:{port}/webhook"})
    assert result.failure is not None
    assert (result.failure.kind, result.failure.code) == ("transient", "connection_error")


async def test_dropped_connection_is_transient(session: aiohttp.ClientSession) -> None:
    async def hang_up(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        result = await send(session, "webhook", {"url": f"http://127.0.0.1:{port}/"})
    assert result.failure is not None
    assert (result.failure.kind, result.failure.code) == ("transient", "connection_error")


async def test_blocked_url_is_permanent_and_sends_nothing(fake: FakeProviders) -> None:
    async with make_session(allow_loopback=False, block_private=False, limit=2) as session:
        result = await send(session, "webhook", fake.config_for("webhook"))
    assert result.failure is not None
    assert (result.failure.kind, result.failure.code) == ("permanent", "blocked_url")
    assert "loopback" in result.failure.message
    assert fake.requests == []


@pytest.mark.parametrize("provider_type", list(PATH_PREFIX))
async def test_invalid_config_is_permanent_and_sends_nothing(
    fake: FakeProviders, session: aiohttp.ClientSession, provider_type: str
) -> None:
    result = await send(session, provider_type, {})
    assert result.failure is not None
    assert (result.ok, result.failure.kind, result.failure.code) == (
        False,
        "permanent",
        "invalid_config",
    )
    assert "required" in result.failure.message
    assert fake.requests == []


@pytest.mark.parametrize(
    ("exc", "kind", "code"),
    [
        (aiohttp.ServerDisconnectedError(), "transient", "connection_error"),
        (aiohttp.ClientPayloadError("truncated"), "transient", "connection_error"),
        (aiohttp.ClientOSError(104, "reset"), "transient", "connection_error"),
        (aiohttp.ConnectionTimeoutError("connect"), "transient", "timeout"),
        (aiohttp.SocketTimeoutError("read"), "transient", "timeout"),
        (aiohttp.InvalidUrlClientError("http://2130706433/"), "permanent", "invalid_url"),
        (BlockedURL("10.0.0.1: private address"), "permanent", "blocked_url"),
        (RuntimeError("bug"), "transient", "unexpected"),
    ],
)
def test_aiohttp_exceptions(exc: BaseException, kind: str, code: str) -> None:
    failure = failure_from_exception(exc)
    assert (failure.kind, failure.code) == (kind, code)


def test_invalid_url_failure_does_not_repeat_the_url() -> None:
    url = "http://2130706433/api/webhooks/1/secret-token"
    failure = failure_from_exception(aiohttp.InvalidUrlClientError(url, "is not canonical"))
    assert failure.message == "InvalidUrlClientError: is not canonical"


# --- validation ----------------------------------------------------------------------------------

OK_URL = "https://hooks.example.com/in"


@pytest.mark.parametrize(
    ("provider_type", "config", "errors"),
    [
        ("webhook", {}, {"url": "required"}),
        ("webhook", {"url": "  "}, {"url": "required"}),
        ("webhook", {"url": 5}, {"url": "Must be text"}),
        ("webhook", {"url": "ftp://x/y"}, {"url": "Not a usable URL"}),
        ("webhook", {"url": OK_URL, "method": "GET"}, {"method": "POST, PUT"}),
        ("webhook", {"url": OK_URL, "format": "xml"}, {"format": "json, form"}),
        ("webhook", {"url": OK_URL, "auth": "oauth"}, {"auth": "none, basic, bearer, header"}),
        ("webhook", {"url": OK_URL, "auth": "basic"}, {"username": "required"}),
        ("webhook", {"url": OK_URL, "auth": "basic", "username": "a:b"}, {"username": "colon"}),
        ("webhook", {"url": OK_URL, "auth": "bearer"}, {"token": "required"}),
        ("webhook", {"url": OK_URL, "auth": "header"},
         {"header_name": "required", "header_value": "required"}),
        ("webhook", {"url": OK_URL, "auth": "header", "header_name": "X Key", "header_value": "v"},
         {"header_name": "header name"}),
        ("webhook", {"url": OK_URL, "auth": "header", "header_name": "X", "header_value": "a\r\nb"},
         {"header_value": "line breaks"}),
        ("webhook", {"url": OK_URL, "headers": "X-A: 1"}, {"headers": "object"}),
        ("webhook", {"url": OK_URL, "headers": {"Bad Name": "v"}}, {"headers": "header name"}),
        ("webhook", {"url": OK_URL, "headers": {"Host": "x"}}, {"headers": "cannot be overridden"}),
        ("webhook", {"url": OK_URL, "headers": {"X-A": 5}}, {"headers": "text without"}),
        ("webhook", {"url": OK_URL, "body_template": "x"}, {"body_template": "object"}),
        ("webhook", {"url": OK_URL, "body_template": {}}, {"body_template": "non-empty"}),
        ("webhook", {"url": OK_URL, "body_template": {"a": "{message.__class__}"}},
         {"body_template": "unsupported placeholder"}),
        ("webhook", {"url": OK_URL, "body_template": {"a": "{title!r}"}},
         {"body_template": "unsupported placeholder"}),
        ("webhook", {"url": OK_URL, "body_template": {"a": "{0}"}},
         {"body_template": "unsupported placeholder"}),
        ("webhook", {"url": OK_URL, "body_template": {"a": "{unclosed"}},
         {"body_template": "invalid template"}),
        ("webhook", {"url": OK_URL, "body_template": {"a": 1}}, {"body_template": "must be text"}),
        ("webhook", [], {"__all__": "must be an object"}),
        ("slack", {}, {"token": "required", "channel": "required"}),
        ("slack", {"token": "t", "channel": "#c", "base_url": "gopher://x"},
         {"base_url": "Not a usable URL"}),
        ("discord", {}, {"url": "required"}),
        ("discord", {"url": "discord.com/api/webhooks/1/t"}, {"url": "no scheme"}),
        ("discord", {"url": OK_URL, "mode": "video"}, {"mode": "content, embed"}),
        ("pushbullet", {}, {"token": "required"}),
        ("pushbullet", {"token": "t", "type": "file"}, {"type": "note, link"}),
        ("pushbullet", {"token": "t", "type": "link"}, {"url": "required"}),
        ("pushbullet", {"token": "t", "type": "link", "url": "javascript:x"}, {"url": "scheme"}),
        ("home_assistant", {},
         {"base_url": "required", "token": "required", "service": "required"}),
        ("home_assistant", {"base_url": OK_URL, "token": "t", "service": "Mobile App"},
         {"service": "notify service name"}),
        ("home_assistant", {"base_url": OK_URL, "token": "t", "service": "../../api/x"},
         {"service": "notify service name"}),
    ],
)  # fmt: skip
def test_validation_errors(provider_type: str, config: Any, errors: dict[str, str]) -> None:
    found = get_provider(provider_type).validate(config)
    assert set(found) == set(errors)
    for field, fragment in errors.items():
        assert fragment.lower() in found[field].lower()


@pytest.mark.parametrize(
    ("provider_type", "config"),
    [
        ("webhook", {"url": OK_URL}),
        ("webhook", {"url": "http://10.0.0.5:8080/hook", "method": "PUT", "format": "form",
                     "auth": "basic", "username": "u", "password": "", "headers": {"X-A": "1"},
                     "body_template": {"t": "{title}", "z": "{data[zone]}", "n": "{{x}}"}}),
        ("slack", {"token": "xoxb-1", "channel": "C123"}),
        ("discord", {"url": "https://discord.com/api/webhooks/1/tok", "mode": "embed"}),
        ("pushbullet", {"token": "o.1", "type": "link", "url": OK_URL, "device_iden": "d"}),
        ("home_assistant", {"base_url": "http://192.168.1.2:8123", "token": "t",
                            "service": "notify.mobile_app_pixel"}),
    ],
)  # fmt: skip
def test_valid_configs(provider_type: str, config: dict[str, Any]) -> None:
    assert get_provider(provider_type).validate(config) == {}
