"""Claiming runs in one transaction: outcomes per request, overlap, leases, job bookkeeping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.claims import AlreadyRunning, ClaimRequest, claim_runs, claim_slot
from services.models import ScheduledJob, TaskRun

pytestmark = pytest.mark.django_db

NOW = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)
LEASE = NOW + timedelta(seconds=30)
S1, S2 = NOW - timedelta(seconds=2), NOW - timedelta(seconds=1)


def claim(*requests: ClaimRequest, force: bool = False) -> list[tuple[str, str]]:
    found = claim_runs(list(requests), worker_id="w1", now=NOW, lease_until=LEASE, force=force)
    return [(c.outcome, c.detail.split(" (")[0]) for c in found]


def job(name: str, **fields: object) -> ScheduledJob:
    return ScheduledJob.objects.create(name=name, **fields)


def running(j: ScheduledJob, lease_until: datetime) -> TaskRun:
    return TaskRun.objects.create(
        job=j, slot=S1 - timedelta(minutes=1), source="scheduled", worker_id="w0",
        status="running", started_at=S1, lease_until=lease_until,
    )  # fmt: skip


def test_two_slots_of_one_job_in_one_batch_skip_the_second() -> None:
    job("a")
    assert claim(ClaimRequest("a", S1, "scheduled"), ClaimRequest("a", S2, "scheduled")) == [
        ("claimed", ""),
        ("skipped", "skipped: previous run still running"),
    ]


def test_overlap_allowed_claims_both() -> None:
    job("a")
    requests = [ClaimRequest("a", s, "scheduled", overlap="allow") for s in (S1, S2)]
    assert claim(*requests) == [("claimed", ""), ("claimed", "")]


def test_a_slot_is_won_once() -> None:
    job("a")
    job("b")
    batch = [ClaimRequest("a", S1, "scheduled"), ClaimRequest("b", S1, "scheduled")]
    assert claim(*batch) == [("claimed", ""), ("claimed", "")]
    TaskRun.objects.update(status="success")
    assert claim(*batch) == [("taken", ""), ("taken", "")]
    assert TaskRun.objects.count() == 2


def test_paused_inactive_and_unknown_jobs() -> None:
    job("paused", paused=True)
    job("gone", active=False)
    result = claim(
        ClaimRequest("paused", S1, "scheduled"),
        ClaimRequest("gone", S1, "scheduled"),
        ClaimRequest("never_synced", S1, "scheduled"),
    )
    assert result == [("paused", ""), ("inactive", ""), ("inactive", "")]
    assert not TaskRun.objects.exists()
    assert ScheduledJob.objects.get(name="paused").last_slot_at == S1  # no catch-up of paused time


def test_a_paused_job_still_runs_by_hand() -> None:
    job("paused", paused=True)
    assert claim(ClaimRequest("paused", None, "manual")) == [("claimed", "")]


def test_an_expired_lease_is_closed_as_abandoned_then_the_slot_runs() -> None:
    dead = running(job("a"), lease_until=NOW - timedelta(seconds=1))
    assert claim(ClaimRequest("a", S2, "scheduled")) == [("claimed", "")]
    dead.refresh_from_db()
    assert dead.status == "failure" and dead.error.startswith("abandoned")


def test_a_live_run_skips_slots_and_refuses_manual_runs_unless_forced() -> None:
    running(job("a"), lease_until=LEASE)
    assert claim(ClaimRequest("a", S2, "scheduled")) == [
        ("skipped", "skipped: previous run still running")
    ]
    with pytest.raises(AlreadyRunning, match=r"task 'a' is already running \(run \d+ by w0"):
        claim_slot(ClaimRequest("a", None, "manual"), worker_id="w1", now=NOW, lease_until=LEASE)
    assert claim(ClaimRequest("a", None, "manual"), force=True) == [("claimed", "")]


def test_jobs_remember_their_latest_slot_and_next_run() -> None:
    job("a", last_slot_at=S2)
    claim(ClaimRequest("a", S1, "scheduled", next_run_at=NOW))  # an older slot (a catch-up)
    a = ScheduledJob.objects.get(name="a")
    assert (a.last_slot_at, a.next_run_at) == (S2, NOW)
