"""Generic webhook: POST/PUT, JSON or form, optional auth, custom headers, templated body.

Config: ``url``; ``method`` POST|PUT; ``format`` json|form; ``auth`` none|basic|bearer|header
(``username``/``password``, ``token``, ``header_name``/``header_value``); ``headers`` (object
of text); ``body_template`` (object of text templates using ``{title}``, ``{message}``,
``{idempotency_key}``, ``{delivery_id}``, ``{data}`` and ``{data[key]}``).
Every request carries ``Idempotency-Key``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from string import Formatter
from typing import Any

import aiohttp
from multidict import CIMultiDict

from notifications.policy import Failure, PermanentError
from notifications.providers.base import (
    ConfigErrors,
    Message,
    Outgoing,
    Provider,
    SendResult,
    base_headers,
    choice_field,
    failed,
    text_field,
    url_field,
)

METHODS = ("POST", "PUT")
FORMATS = ("json", "form")
AUTH_MODES = ("none", "basic", "bearer", "header")

_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# Headers aiohttp must own: overriding them breaks framing or the connection.
_RESERVED_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})
_FIELD = re.compile(
    r"(?P<name>title|message|idempotency_key|delivery_id|data)|data\[(?P<key>[^\[\]]+)\]"
)


class TemplateError(PermanentError):
    code = "template_error"


class WebhookProvider(Provider):
    type = "webhook"
    # The URL stays visible (it identifies the receiver); credentials do not.
    secret_fields = ("token", "password", "header_value")

    def check_fields(self, config: Mapping[str, Any], errors: ConfigErrors) -> None:
        url_field(config, "url", errors, required=True)
        choice_field(config, "method", METHODS, errors)
        choice_field(config, "format", FORMATS, errors)
        _validate_auth(config, errors)
        _validate_headers(config.get("headers"), errors)
        _validate_template(config.get("body_template"), errors)

    def build(self, config: Mapping[str, Any], message: Message) -> Outgoing | SendResult:
        as_json = (config.get("format") or "json") == "json"
        try:
            body = _body(config.get("body_template"), message, as_json=as_json)
        except TemplateError as exc:
            return failed(Failure("permanent", exc.code, str(exc)))
        return Outgoing(
            (config.get("method") or "POST").strip(),
            config["url"].strip(),
            _headers(config, message),
            json=body if as_json else None,
            data=None if as_json else body,
        )


def _validate_auth(config: Mapping[str, Any], errors: ConfigErrors) -> None:
    auth = choice_field(config, "auth", AUTH_MODES, errors)
    if auth == "basic":
        username = text_field(config, "username", errors, required=True)
        if ":" in username:
            errors["username"] = "Must not contain a colon (Basic auth separates on it)."
        text_field(config, "password", errors, required=False)
    elif auth == "bearer":
        text_field(config, "token", errors, required=True)
    elif auth == "header":
        name = text_field(config, "header_name", errors, required=True)
        if name and not _HEADER_NAME.fullmatch(name):
            errors["header_name"] = "Not a valid HTTP header name."
        value = text_field(config, "header_value", errors, required=True)
        if _has_line_break(value):
            errors["header_value"] = "Must not contain line breaks."


def _validate_headers(headers: object, errors: ConfigErrors) -> None:
    if headers is None:
        return
    if not isinstance(headers, Mapping):
        errors["headers"] = "Must be an object of header name to text value."
        return
    for name, value in headers.items():
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            errors["headers"] = f"{name!r} is not a valid HTTP header name."
        elif name.lower() in _RESERVED_HEADERS:
            errors["headers"] = f"{name} is set by the HTTP client and cannot be overridden."
        elif not isinstance(value, str) or _has_line_break(value):
            errors["headers"] = f"The value of {name} must be text without line breaks."


def _validate_template(template: object, errors: ConfigErrors) -> None:
    if template is None:
        return
    if not isinstance(template, Mapping) or not template:
        errors["body_template"] = "Must be a non-empty object of field name to text template."
        return
    for key, value in template.items():
        if not isinstance(key, str) or not isinstance(value, str):
            errors["body_template"] = f"{key!r}: keys and templates must be text."
            return
        try:
            _parse(value)
        except TemplateError as exc:
            errors["body_template"] = f"{key}: {exc}"
            return


def _headers(config: Mapping[str, Any], message: Message) -> CIMultiDict[str]:
    # Case-insensitive: a custom "authorization" must not become a second Authorization header.
    headers: CIMultiDict[str] = CIMultiDict(config.get("headers") or {})
    auth = config.get("auth") or "none"
    if auth == "basic":
        # UTF-8 as RFC 7617 recommends (the old BasicAuth default was latin-1).
        login, password = config["username"].strip(), config.get("password") or ""
        headers["Authorization"] = aiohttp.encode_basic_auth(login, password)
    elif auth == "bearer":
        headers["Authorization"] = f"Bearer {config['token'].strip()}"
    elif auth == "header":
        headers[config["header_name"].strip()] = config["header_value"].strip()
    headers.update(base_headers(message))
    return headers


def _body(template: Mapping[str, str] | None, message: Message, *, as_json: bool) -> dict[str, Any]:
    if template:
        return {
            key: _render(value, message, whole_value=as_json) for key, value in template.items()
        }
    body: dict[str, Any] = {
        "title": message.title,
        "message": message.message,
        "data": dict(message.data),
        "idempotency_key": message.idempotency_key,
        "delivery_id": message.delivery_id,
    }
    if as_json:
        return body
    return {key: _as_text(value) for key, value in body.items() if value is not None}


def _parse(template: str) -> list[tuple[str, str | None]]:
    """(literal, field) pairs; only the documented fields, no attributes, specs or conversions.

    str.format itself would follow ``{message.__class__...}`` into the interpreter's internals,
    which a config author must not reach.
    """
    try:
        parsed = list(Formatter().parse(template))
    except ValueError as exc:
        raise TemplateError(f"invalid template: {exc}") from exc
    parts: list[tuple[str, str | None]] = []
    for literal, field, spec, conversion in parsed:
        if field is not None and (spec or conversion or not _FIELD.fullmatch(field)):
            raise TemplateError(
                f"unsupported placeholder {{{field}}}: use {{title}}, {{message}}, "
                "{idempotency_key}, {delivery_id}, {data} or {data[key]}"
            )
        parts.append((literal, field))
    return parts


def _render(template: str, message: Message, *, whole_value: bool) -> Any:
    """The rendered text; a template that is a single placeholder keeps the value's JSON type."""
    parts = _parse(template)
    if whole_value and len(parts) == 1 and not parts[0][0] and parts[0][1] is not None:
        return _lookup(parts[0][1], message)
    return "".join(
        literal + ("" if field is None else _as_text(_lookup(field, message)))
        for literal, field in parts
    )


def _lookup(field: str, message: Message) -> Any:
    match = _FIELD.fullmatch(field)
    assert match is not None  # _parse checked it
    if match["name"] == "data":
        return dict(message.data)
    if match["name"]:
        return getattr(message, match["name"])
    key = match["key"]
    if key not in message.data:
        raise TemplateError(f"the message data has no key {key!r} (used as {{data[{key}]}})")
    return message.data[key]


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), default=str)


def _has_line_break(value: str) -> bool:
    return any(char in value for char in "\r\n\0")


PROVIDER = WebhookProvider()
