from __future__ import annotations

import socket
from datetime import UTC, datetime

import pytest

from notifications.policy import (
    MAX_MESSAGE_CHARS,
    Failure,
    InvalidConfig,
    PermanentError,
    classify_exception,
    classify_status,
    next_attempt_delay,
    parse_retry_after,
)
from services.backoff import stable_fraction

NOW = datetime(2025, 6, 2, 12, 0, 0, tzinfo=UTC)
TRANSIENT = Failure("transient", "http_503", "HTTP 503")
RATE_LIMITED = Failure("transient", "rate_limited", "HTTP 429")


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
def test_2xx_is_success(status: int) -> None:
    assert classify_status(status, "", {}, NOW) is None


@pytest.mark.parametrize(
    ("status", "kind", "code"),
    [
        (500, "transient", "http_500"),
        (502, "transient", "http_502"),
        (503, "transient", "http_503"),
        (504, "transient", "http_504"),
        (599, "transient", "http_599"),
        (408, "transient", "http_408"),
        (429, "transient", "rate_limited"),
        (400, "permanent", "http_400"),
        (401, "permanent", "http_401"),
        (403, "permanent", "http_403"),
        (404, "permanent", "http_404"),
        (410, "permanent", "http_410"),
        (422, "permanent", "http_422"),
        (301, "permanent", "http_301"),  # redirects are not followed
        (302, "permanent", "http_302"),
    ],
)
def test_status_classes(status: int, kind: str, code: str) -> None:
    failure = classify_status(status, "nope", {}, NOW)
    assert failure is not None
    assert (failure.kind, failure.code) == (kind, code)
    assert failure.message == f"HTTP {status}: nope"


def test_status_message_keeps_a_bounded_snippet_of_the_body() -> None:
    failure = classify_status(404, "  " + "x" * 10_000, {}, NOW)
    assert failure is not None
    assert failure.message == "HTTP 404: " + "x" * MAX_MESSAGE_CHARS
    empty = classify_status(500, "", {}, NOW)
    assert empty is not None and empty.message == "HTTP 500"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "120"}, 120.0),
        ({"retry-after": "7"}, 7.0),  # plain dicts are looked up case-insensitively
        ({"RETRY-AFTER": "7"}, 7.0),
        ({}, None),
        ({"Retry-After": "soon"}, None),
    ],
)
def test_429_honours_retry_after(headers: dict[str, str], expected: float | None) -> None:
    failure = classify_status(429, "slow down", headers, NOW)
    assert failure is not None
    assert (failure.kind, failure.code, failure.retry_after) == (
        "transient",
        "rate_limited",
        expected,
    )


def test_503_carries_retry_after_but_permanent_errors_do_not() -> None:
    unavailable = classify_status(503, "", {"Retry-After": "42"}, NOW)
    assert unavailable is not None and unavailable.retry_after == 42.0
    forbidden = classify_status(403, "", {"Retry-After": "42"}, NOW)
    assert forbidden is not None and forbidden.retry_after is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        ("0", 0.0),
        ("  30 ", 30.0),
        ("1.5", 1.5),
        ("-5", 0.0),  # negative: clamped to "now"
        ("3600", 3600.0),
        ("99999", 3600.0),  # clamped: a provider cannot park a delivery for a day
        ("Mon, 02 Jun 2025 12:01:00 GMT", 60.0),
        ("Mon, 02 Jun 2025 12:00:30 -0000", 30.0),  # naive parse, read as GMT
        ("Mon, 02 Jun 2025 11:00:00 GMT", 0.0),  # in the past
        ("Tue, 03 Jun 2025 12:00:00 GMT", 3600.0),  # a day ahead: clamped
        ("soon", None),
        ("", None),
        ("nan", None),
        ("inf", None),
        ("1e3", None),
        ("12 seconds", None),
        ("Mon, 32 Jun 2025 12:00:00 GMT", None),
        (None, None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, NOW) == expected


@pytest.mark.parametrize(
    ("exc", "kind", "code"),
    [
        (TimeoutError(), "transient", "timeout"),
        (ConnectionRefusedError(111, "refused"), "transient", "connection_error"),
        (ConnectionResetError(), "transient", "connection_error"),
        (socket.gaierror(-2, "Name or service not known"), "transient", "connection_error"),
        (OSError("network unreachable"), "transient", "connection_error"),
        (InvalidConfig("missing token"), "permanent", "invalid_config"),
        (PermanentError("no", code="custom_code"), "permanent", "custom_code"),
        (RuntimeError("boom"), "transient", "unexpected"),
        (KeyError("x"), "transient", "unexpected"),
        (ValueError("odd"), "transient", "unexpected"),
    ],
)
def test_classify_exception(exc: BaseException, kind: str, code: str) -> None:
    failure = classify_exception(exc)
    assert (failure.kind, failure.code, failure.retry_after) == (kind, code, None)


def test_classify_exception_describes_the_error() -> None:
    assert classify_exception(RuntimeError("boom")).message == "RuntimeError: boom"
    assert classify_exception(TimeoutError()).message == "TimeoutError"
    assert classify_exception(InvalidConfig("missing token")).message == "missing token"


def test_permanent_error_is_found_under_a_wrapping_exception() -> None:
    try:
        try:
            raise InvalidConfig("bad url")
        except InvalidConfig as inner:
            raise OSError("wrapped by a library") from inner
    except OSError as outer:
        failure = classify_exception(outer)
    assert (failure.kind, failure.code, failure.message) == (
        "permanent",
        "invalid_config",
        "bad url",
    )


def test_library_connection_errors_can_be_named() -> None:
    class Disconnected(Exception):  # like aiohttp's ServerDisconnectedError: not an OSError
        pass

    assert classify_exception(Disconnected()).code == "unexpected"
    named = classify_exception(Disconnected(), connection_errors=(Disconnected,))
    assert (named.kind, named.code) == ("transient", "connection_error")


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        (TRANSIENT, [5, 10, 20, 40, 80, 160, 320, 600, 600, 600]),
        (RATE_LIMITED, [30, 60, 120, 240, 480, 600, 600, 600, 600, 600]),
    ],
)
def test_backoff_doubles_to_the_cap(failure: Failure, expected: list[float]) -> None:
    delays = [next_attempt_delay(n, failure, "k", jitter=0.0) for n in range(1, 11)]
    assert delays == expected


@pytest.mark.parametrize(
    ("base", "cap", "attempt", "expected"),
    [(1.0, 10.0, 1, 1.0), (1.0, 10.0, 4, 8.0), (1.0, 10.0, 5, 10.0), (5.0, 600.0, 10_000, 600.0)],
)
def test_backoff_parameters(base: float, cap: float, attempt: int, expected: float) -> None:
    delay = next_attempt_delay(attempt, TRANSIENT, "k", base=base, cap=cap, jitter=0.0)
    assert delay == expected


@pytest.mark.parametrize("attempt", [1, 2, 3, 5, 8, 12])
@pytest.mark.parametrize("key", ["a", "b", "0f8e9c", "delivery-12345"])
def test_jitter_is_a_stable_fraction_of_a_second(attempt: int, key: str) -> None:
    plain = next_attempt_delay(attempt, TRANSIENT, key, jitter=0.0)
    jittered = next_attempt_delay(attempt, TRANSIENT, key)
    assert 0.0 <= jittered - plain < 1.0
    assert jittered - plain == pytest.approx(stable_fraction(key, attempt))
    assert next_attempt_delay(attempt, TRANSIENT, key) == jittered  # same on every worker


def test_jitter_spreads_deliveries_that_failed_together() -> None:
    jitters = [next_attempt_delay(1, TRANSIENT, f"key-{i}") - 5.0 for i in range(200)]
    assert min(jitters) < 0.1
    assert max(jitters) > 0.9
    assert len(set(jitters)) == 200


@pytest.mark.parametrize(
    ("attempt", "retry_after", "failure_code", "expected_at_least", "expected_below"),
    [
        (1, 100.0, "rate_limited", 100.0, 100.0 + 1e-9),  # longer than 30 s + jitter: it wins
        (1, 3600.0, "http_503", 3600.0, 3600.0 + 1e-9),  # beyond the cap: still honoured
        (3, 2.0, "http_503", 20.0, 21.0),  # shorter than the backoff: the backoff wins
        (1, 0.0, "rate_limited", 30.0, 31.0),
    ],
)
def test_delay_is_never_below_retry_after(
    attempt: int,
    retry_after: float,
    failure_code: str,
    expected_at_least: float,
    expected_below: float,
) -> None:
    failure = Failure("transient", failure_code, "", retry_after)
    delay = next_attempt_delay(attempt, failure, "k")
    assert expected_at_least <= delay < expected_below
