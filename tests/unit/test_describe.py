"""services.describe: relative times, durations, tables, listing rows, run reports. Pure."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from services.describe import (
    JobView,
    ago,
    duration,
    next_run,
    relative,
    run_report,
    span,
    table,
    task_row,
    upcoming_lines,
)
from services.execution import Outcome
from services.registry import TaskSpec
from services.schedules import Cron, DailyAt, Every, Once

NOW = datetime(2025, 6, 2, 12, 0, 0, tzinfo=UTC)
PARIS = ZoneInfo("Europe/Paris")  # CEST = UTC+2 in June


def _noop() -> None:
    pass


def spec(schedule: object = None, name: str = "t") -> TaskSpec:
    return TaskSpec(name=name, func=_noop, schedule=schedule)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (0, "in 0s"),
        (45, "in 45s"),
        (45.9, "in 45s"),  # truncated, never rounded up past the real remaining time
        (60, "in 1m"),
        (90, "in 1m 30s"),
        (3 * 3600 + 12 * 60 + 59, "in 3h 12m"),
        (3 * 3600 + 40, "in 3h"),  # the next unit is 0: not "3h 0m", and seconds not shown
        (2 * 86400 + 4 * 3600 + 59 * 60, "in 2d 4h"),
        (400 * 86400, "in 400d"),
    ],
)
def test_span_in_the_future(seconds: float, expected: str) -> None:
    assert f"in {span(seconds)}" == expected


@pytest.mark.parametrize(
    ("offset", "expected"),
    [
        (timedelta(seconds=45), "in 45s"),
        (timedelta(hours=3, minutes=12, seconds=30), "in 3h 12m"),
        (timedelta(days=2, hours=4), "in 2d 4h"),
        (timedelta(minutes=-5), "overdue by 5m"),
        (timedelta(minutes=-5, seconds=-7), "overdue by 5m 7s"),
        (timedelta(milliseconds=400), "now"),
        (timedelta(milliseconds=-400), "now"),
    ],
)
def test_relative(offset: timedelta, expected: str) -> None:
    assert relative(NOW + offset, NOW) == expected


@pytest.mark.parametrize(
    ("offset", "expected"),
    [
        (timedelta(0), "just now"),
        (timedelta(seconds=30), "30s ago"),
        (timedelta(hours=26), "1d 2h ago"),
    ],
)
def test_ago(offset: timedelta, expected: str) -> None:
    assert ago(NOW - offset, NOW) == expected


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [(None, "-"), (0.01234, "0.012s"), (4.25, "4.2s"), (59.94, "59.9s"), (184, "3m 4s")],
)
def test_duration(seconds: float | None, expected: str) -> None:
    assert duration(seconds) == expected


def test_table_aligns_columns_under_a_rule_and_strips_trailing_space() -> None:
    text = table(("NAME", "N"), [("a", "1"), ("longer", "22")])

    assert text.splitlines() == [
        "NAME    N",
        "------  --",
        "a       1",
        "longer  22",
    ]


def test_table_refuses_a_row_of_the_wrong_width() -> None:
    with pytest.raises(ValueError, match="2 cells, expected 3"):
        table(("A", "B", "C"), [("x", "y")])


@pytest.mark.parametrize(
    ("schedule", "job", "expected"),
    [
        (None, None, "manual only"),
        (DailyAt(3, 0, "UTC"), None, "2025-06-03 03:00:00 UTC (in 15h)"),
        (DailyAt(3, 0, "UTC"), JobView(paused=False), "2025-06-03 03:00:00 UTC (in 15h)"),
        (DailyAt(3, 0, "UTC"), JobView(paused=True), "paused"),
        (DailyAt(3, 0, "UTC"), JobView(paused=False, active=False), "not scheduled (job inactive)"),
        (Once(NOW - timedelta(days=1)), None, "none (schedule ended)"),
        (Cron("61 * * * *"), None, "invalid schedule: cron expression '61 * * * *': minute 61 "),
    ],
)
def test_next_run(schedule: object, job: JobView | None, expected: str) -> None:
    assert next_run(spec(schedule), job, NOW, UTC).startswith(expected)


def test_next_run_is_shown_in_the_local_zone() -> None:
    daily = spec(DailyAt(3, 0, "Europe/Paris"))

    assert next_run(daily, None, NOW, PARIS) == "2025-06-03 03:00:00 CEST (in 13h)"


def test_task_row_of_a_task_never_synced() -> None:
    row = task_row(spec(DailyAt(3, 0, "UTC"), "nightly"), "yes", None, NOW, UTC)

    assert row == [
        "nightly",
        "every day at 03:00 (UTC)",
        "yes",
        "not synced",
        "2025-06-03 03:00:00 UTC (in 15h)",
        "never",
        "-",
    ]


def test_task_row_with_a_last_run() -> None:
    job = JobView(paused=True, last_run_at=NOW - timedelta(minutes=90), last_status="failure")

    row = task_row(spec(Every(60), "often"), "error: RuntimeError: x", job, NOW, UTC)

    assert row == [
        "often",
        "every minute",
        "error: RuntimeError: x",
        "yes",
        "paused",
        "2025-06-02 10:30:00 UTC (1h 30m ago)",
        "failure",
    ]


def test_upcoming_lines_count_and_local_time() -> None:
    lines = upcoming_lines(spec(DailyAt(3, 0, "Europe/Paris"), "nightly"), 3, NOW, PARIS)

    assert lines == [
        "nightly: every day at 03:00 (Europe/Paris)",
        "  2025-06-03 03:00:00 CEST (in 13h)",
        "  2025-06-04 03:00:00 CEST (in 1d 13h)",
        "  2025-06-05 03:00:00 CEST (in 2d 13h)",
    ]


def test_upcoming_lines_add_the_jitter_delay_to_each_slot() -> None:
    jittered = Every(3600, jitter=600)
    slot = datetime(2025, 6, 2, 13, 0, tzinfo=UTC)
    fire = slot + timedelta(seconds=jittered.fire_delay("j", slot))
    assert fire != slot  # otherwise this test could not tell slots from fire times

    lines = upcoming_lines(spec(jittered, "j"), 1, NOW, UTC)

    assert lines[1] == f"  {fire:%Y-%m-%d %H:%M:%S} UTC ({relative(fire, NOW)})"


@pytest.mark.parametrize(
    ("schedule", "tail"),
    [
        (None, ["  no schedule: runs only by hand (manage.py run_task)"]),
        (
            Once(NOW + timedelta(hours=1)),
            ["  2025-06-02 13:00:00 UTC (in 1h)", "  (no further runs: the schedule ends)"],
        ),
    ],
)
def test_upcoming_lines_of_schedules_that_run_out(schedule: object, tail: list[str]) -> None:
    assert upcoming_lines(spec(schedule), 3, NOW, UTC)[1:] == tail


def test_run_report_of_a_success_has_the_result_as_json() -> None:
    out, err = run_report("t", 7, Outcome("success", 1, result={"deleted": 3}), 0.25)

    summary, result = out.split("\n", 1)
    assert summary == "task t: success in 0.250s (run 7, 1 attempt)"
    assert json.loads(result.removeprefix("result: ")) == {"deleted": 3}
    assert err == ""


def test_run_report_of_a_failure_keeps_the_traceback_tail() -> None:
    traceback = "\n".join(f"line {n}" for n in range(30)) + "\n"
    outcome = Outcome("failure", 3, error="ValueError: no", traceback=traceback)

    out, err = run_report("t", 8, outcome, 2.0)

    assert out == "task t: failure after 2.0s (run 8, 3 attempts)"
    assert err.splitlines() == [
        "error: ValueError: no",
        "traceback (last 12 lines):",
        *[f"line {n}" for n in range(18, 30)],
    ]


def test_run_report_of_a_timeout_has_no_traceback_section() -> None:
    outcome = Outcome("timeout", 1, error="timed out after 5s (attempt 1)")

    out, err = run_report("t", 9, outcome, 5.0)

    assert out == "task t: timeout after 5.0s (run 9, 1 attempt)"
    assert err == "error: timed out after 5s (attempt 1)"
