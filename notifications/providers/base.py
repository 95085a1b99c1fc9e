"""What every provider shares: the message, the result, the base class, validation, sending.

A provider says how its config is validated (``validate``) and which request a message becomes
(``build``); ``Provider.send`` is the same for all: validate (unless the caller did: the
dispatcher validates each provider's config once, not once per delivery), build, send,
interpret. Sending never raises for HTTP
answers or network errors: it returns a ``SendResult`` whose ``failure`` the dispatcher turns
into "retry later" or "dead now".
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

import aiohttp
from multidict import CIMultiDictProxy

from notifications.policy import Failure, classify_exception, classify_status
from notifications.ssrf import BlockedURL, check_url

ConfigErrors = dict[str, str]
# Status, body, headers of a 2xx answer -> a failure the status alone does not show (Slack).
Interpret = Callable[[int, bytes, "CIMultiDictProxy[str]", datetime], Failure | None]

# Error bodies are for humans and log rows; Slack's success JSON is a few hundred bytes.
MAX_BODY_BYTES = 64 * 1024
# aiohttp's connection-level errors that are not OSErrors (ServerDisconnectedError, ...).
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    aiohttp.ClientConnectionError,
    aiohttp.ClientPayloadError,
)


@dataclass(frozen=True, slots=True)
class Message:
    title: str
    message: str
    data: Mapping[str, Any] = field(default_factory=dict)
    idempotency_key: str = ""
    delivery_id: int | None = None


@dataclass(frozen=True, slots=True)
class SendResult:
    ok: bool
    status: int | None
    failure: Failure | None
    detail: str


@dataclass(frozen=True, slots=True)
class Outgoing:
    """The one HTTP request a provider sends for a message."""

    method: str
    url: str
    headers: Mapping[str, str]
    json: Any = None
    data: Any = None
    # A failure hidden in a 2xx answer (Slack's ``ok: false``); None when the status says all.
    interpret: Interpret | None = None


class Provider(ABC):
    """One notification service: its config's validation and the request a message becomes."""

    type: ClassVar[str]
    secret_fields: ClassVar[tuple[str, ...]]

    def validate(self, config: Mapping[str, Any]) -> ConfigErrors:
        """Field name -> error for the plain (decrypted) config; empty when it is usable."""
        if (errors := not_a_mapping(config)) is not None:
            return errors
        errors = {}
        self.check_fields(config, errors)
        return errors

    @abstractmethod
    def check_fields(self, config: Mapping[str, Any], errors: ConfigErrors) -> None:
        """Record at most one error per unusable field of ``config`` in ``errors``."""

    @abstractmethod
    def build(self, config: Mapping[str, Any], message: Message) -> Outgoing | SendResult:
        """The request for ``message`` under a valid ``config``, or the failure that stops it."""

    async def send(
        self,
        session: aiohttp.ClientSession,
        config: Mapping[str, Any],
        message: Message,
        now: datetime,
        *,
        validated: bool = False,
    ) -> SendResult:
        """Send ``message``; an invalid config is a permanent failure and sends nothing.

        ``validated``: the caller has had ``config`` accepted by ``validate`` already (the
        dispatcher does once per provider version), so it is not validated again.
        """
        if not validated and (errors := self.validate(config)):
            return invalid(errors)
        outgoing = self.build(config, message)
        if isinstance(outgoing, SendResult):
            return outgoing
        return await request(session, outgoing, now=now)


def failure_from_exception(exc: BaseException) -> Failure:
    """``policy.classify_exception`` that knows aiohttp's exception types."""
    if isinstance(exc, aiohttp.InvalidURL) and not isinstance(exc, BlockedURL):
        # Not str(exc): it contains the whole URL, and a Discord URL embeds its token.
        reason = exc.description or "not a valid URL"
        return Failure("permanent", "invalid_url", f"{type(exc).__name__}: {reason}")
    return classify_exception(exc, connection_errors=CONNECTION_ERRORS)


def invalid(errors: ConfigErrors) -> SendResult:
    detail = "; ".join(f"{name}: {error}" for name, error in sorted(errors.items()))
    return failed(Failure("permanent", "invalid_config", detail))


def failed(failure: Failure, status: int | None = None) -> SendResult:
    return SendResult(ok=False, status=status, failure=failure, detail=failure.message)


def base_headers(message: Message) -> dict[str, str]:
    # Delivery is at-least-once: the key lets a receiver drop a repeat after a lost answer.
    return {"Idempotency-Key": message.idempotency_key} if message.idempotency_key else {}


async def request(
    session: aiohttp.ClientSession, outgoing: Outgoing, *, now: datetime
) -> SendResult:
    """Send one request and interpret the answer; network errors become failures too."""
    try:
        # Redirects are not followed: a moved endpoint is a config change, and each hop would be
        # another destination (the session's guard would check it, but a 3xx is clearer).
        async with session.request(
            outgoing.method,
            outgoing.url,
            headers=outgoing.headers,
            json=outgoing.json,
            data=outgoing.data,
            allow_redirects=False,
        ) as response:
            body = await read_capped(response)
            status, answer_headers = response.status, response.headers
    except Exception as exc:
        return failed(failure_from_exception(exc))
    failure = classify_status(status, body.decode("utf-8", "replace"), answer_headers, now)
    if failure is None and outgoing.interpret is not None:
        failure = outgoing.interpret(status, body, answer_headers, now)
    if failure is not None:
        return failed(failure, status)
    return SendResult(ok=True, status=status, failure=None, detail=f"HTTP {status}")


async def read_capped(response: aiohttp.ClientResponse, limit: int = MAX_BODY_BYTES) -> bytes:
    """At most ``limit`` bytes of the body: a hostile endpoint cannot make us buffer gigabytes."""
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = await response.content.read(limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


# --- validation helpers: each records at most one error per field ---------------------------


def text_field(
    config: Mapping[str, Any], name: str, errors: ConfigErrors, *, required: bool
) -> str:
    """A string field, stripped; records "required" / "must be text" errors."""
    value = config.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            errors[name] = "This field is required."
        return ""
    if not isinstance(value, str):
        errors[name] = f"Must be text, not {type(value).__name__}."
        return ""
    return value.strip()


def choice_field(
    config: Mapping[str, Any], name: str, options: tuple[str, ...], errors: ConfigErrors
) -> str:
    """An enum field; the first option is the default when the field is absent or blank."""
    value = text_field(config, name, errors, required=False) or options[0]
    if name not in errors and value not in options:
        errors[name] = f"Must be one of {', '.join(options)}; got {value!r}."
    return value


def url_field(config: Mapping[str, Any], name: str, errors: ConfigErrors, *, required: bool) -> str:
    """An http(s) URL field (form only: which addresses are allowed is checked at send time)."""
    value = text_field(config, name, errors, required=required)
    if value:
        try:
            check_url(value)
        except BlockedURL as exc:
            errors[name] = f"Not a usable URL: {exc.reason}."
    return value


def not_a_mapping(config: object) -> ConfigErrors | None:
    if isinstance(config, Mapping):
        return None
    return {"__all__": f"The configuration must be an object, not {type(config).__name__}."}


def join_url(base: str, path: str) -> str:
    return base.rstrip("/") + "/" + path.lstrip("/")
