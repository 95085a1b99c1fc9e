from __future__ import annotations

import pytest

from services.backoff import exponential, stable_fraction


@pytest.mark.parametrize(
    ("attempt", "expected"),
    [
        (1, 1.0),
        (2, 2.0),
        (3, 4.0),
        (4, 8.0),
        (5, 16.0),
        (6, 32.0),
        (7, 60.0),  # 64 capped
        (8, 60.0),
        (100, 60.0),
    ],
)
def test_exponential_doubles_to_cap(attempt: int, expected: float) -> None:
    assert exponential(attempt, base=1.0, cap=60.0) == expected


@pytest.mark.parametrize(
    ("attempt", "base", "cap", "expected"),
    [
        (1, 0.5, 10.0, 0.5),
        (3, 0.5, 10.0, 2.0),
        (6, 0.5, 10.0, 10.0),
        (1, 5.0, 3.0, 3.0),  # the cap wins even on the first attempt
        (4, 0.01, 60.0, 0.08),
    ],
)
def test_exponential_other_bases(attempt: int, base: float, cap: float, expected: float) -> None:
    assert exponential(attempt, base=base, cap=cap) == pytest.approx(expected)


@pytest.mark.parametrize("attempt", [0, -1, -100])
def test_exponential_is_one_based(attempt: int) -> None:
    with pytest.raises(ValueError, match="1-based"):
        exponential(attempt, base=1.0, cap=60.0)


@pytest.mark.parametrize("attempt", [1_000, 10**6, 10**18])
def test_exponential_huge_attempt_does_not_overflow(attempt: int) -> None:
    assert exponential(attempt, base=1.0, cap=60.0) == 60.0


def test_exponential_is_monotonic_non_decreasing() -> None:
    delays = [exponential(n, base=0.3, cap=45.0) for n in range(1, 200)]
    assert delays == sorted(delays)
    assert delays[-1] == 45.0


@pytest.mark.parametrize(
    "parts",
    [(), ("task",), ("task", "2025-01-01T00:00:00+00:00"), (1, 2.5, None), ("ü", b"x")],
)
def test_stable_fraction_is_deterministic_and_in_unit_interval(parts: tuple[object, ...]) -> None:
    value = stable_fraction(*parts)
    assert value == stable_fraction(*parts)
    assert 0.0 <= value < 1.0


def test_stable_fraction_known_value() -> None:
    # pinned so that a change of hashing (which would make replicas disagree) is noticed
    assert stable_fraction("a") == int("ca978112ca1bbdca", 16) / 2**64


def test_stable_fraction_differs_by_parts_and_spreads() -> None:
    values = [stable_fraction("cleanup", i) for i in range(1_000)]
    assert len(set(values)) == 1_000
    assert all(0.0 <= v < 1.0 for v in values)
    # roughly uniform: each tenth of [0, 1) gets a fair share
    buckets = [sum(1 for v in values if k / 10 <= v < (k + 1) / 10) for k in range(10)]
    assert min(buckets) > 50
