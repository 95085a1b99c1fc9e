"""The admin of the cron core: pages load, job actions, the runtime setting form's validation."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from services.models import RuntimeSetting, ScheduledJob, TaskRun

pytestmark = pytest.mark.django_db

EVENTS_DAYS = "retention.alarm_events_days"


@pytest.fixture
def admin_client(client: Client, django_user_model: Any) -> Client:
    """pytest-django's, without a password: hashing one costs a second per test."""
    admin = django_user_model.objects.create_superuser("admin", "admin@example.com", None)
    client.force_login(admin)
    return client


@pytest.fixture
def jobs() -> dict[str, ScheduledJob]:
    now = timezone.now()
    made = {
        "events": ScheduledJob.objects.create(
            name="cleanup_old_events", schedule="every day at 03:00 (UTC)", tags=["maintenance"]
        ),
        "paused": ScheduledJob.objects.create(name="cleanup_task_runs", paused=True),
        "gone": ScheduledJob.objects.create(name="removed_task", active=False, tags=["old"]),
    }
    TaskRun.objects.create(
        job=made["events"],
        source="scheduled",
        slot=now,
        status="failure",
        started_at=now,
        duration=1.5,
        error="ValueError: <boom>",
        traceback='Traceback (most recent call last):\n  raise ValueError("<boom>")\n',
    )
    return made


def changelist(model: str) -> str:
    return reverse(f"admin:services_{model}_changelist")


@pytest.mark.parametrize("model", ["scheduledjob", "taskrun", "runtimesetting"])
def test_changelists_load(admin_client: Client, jobs: dict[str, ScheduledJob], model: str) -> None:
    RuntimeSetting.objects.create(key=EVENTS_DAYS, value=10)

    response = admin_client.get(changelist(model))

    assert response.status_code == 200


def test_job_list_computes_next_run_from_the_registry(
    admin_client: Client, jobs: dict[str, ScheduledJob], settings: Any
) -> None:
    settings.TIME_ZONE = "Europe/Paris"
    changes = admin_client.get(changelist("scheduledjob")).context["cl"]

    next_runs = {job.name: changes.model_admin.next_run(job) for job in changes.result_list}

    assert next_runs["cleanup_task_runs"] == "paused"
    assert next_runs["removed_task"] == "not registered"
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d 03:00:00 CES?T \(in .+\)", next_runs["cleanup_old_events"]
    )


def test_job_list_filters_by_tag(admin_client: Client, jobs: dict[str, ScheduledJob]) -> None:
    response = admin_client.get(changelist("scheduledjob"), {"tag": "maintenance"})

    assert [job.name for job in response.context["cl"].result_list] == ["cleanup_old_events"]


def test_job_page_shows_its_recent_runs(
    admin_client: Client, jobs: dict[str, ScheduledJob]
) -> None:
    job = jobs["events"]

    page = admin_client.get(reverse("admin:services_scheduledjob_change", args=[job.pk]))

    content = page.content.decode()
    run = job.runs.get()
    assert reverse("admin:services_taskrun_change", args=[run.pk]) in content
    assert "ValueError: &lt;boom&gt;" in content  # escaped, never raw HTML
    assert f"?job__id__exact={job.pk}" in content


def test_run_page_shows_the_traceback_read_only(
    admin_client: Client, jobs: dict[str, ScheduledJob]
) -> None:
    run = jobs["events"].runs.get()

    page = admin_client.get(reverse("admin:services_taskrun_change", args=[run.pk]))

    assert page.status_code == 200
    assert "<pre>Traceback (most recent call last):" in page.content.decode()
    assert admin_client.get(reverse("admin:services_taskrun_add")).status_code == 403
    assert not page.context["has_change_permission"]
    assert not page.context["has_delete_permission"]


def act(client: Client, action: str, *selected: ScheduledJob) -> Any:
    return client.post(
        changelist("scheduledjob"),
        {"action": action, "_selected_action": [job.pk for job in selected]},
        follow=True,
    )


def test_pause_and_resume_actions(admin_client: Client, jobs: dict[str, ScheduledJob]) -> None:
    events, paused = jobs["events"], jobs["paused"]

    act(admin_client, "pause", events)
    events.refresh_from_db()
    assert events.paused

    act(admin_client, "resume", events, paused)
    assert not ScheduledJob.objects.filter(pk__in=[events.pk, paused.pk], paused=True).exists()


def test_run_now_requests_active_jobs_and_says_how_they_run(
    admin_client: Client, jobs: dict[str, ScheduledJob]
) -> None:
    before = timezone.now()

    response = act(admin_client, "run_now", jobs["events"], jobs["gone"])

    requested = dict(ScheduledJob.objects.values_list("name", "run_requested_at"))
    assert requested["cleanup_old_events"] is not None
    assert requested["cleanup_old_events"] >= before
    assert requested["removed_task"] is None  # no worker knows it: nobody would take it
    texts = [str(message) for message in response.context["messages"]]
    assert texts[0].startswith("Asked the worker to run 1 job(s) now: it is notified at once")
    assert texts[1] == "1 inactive job(s) not requested: no worker has them registered."


def test_jobs_are_not_added_and_active_ones_not_deleted_here(
    admin_client: Client, jobs: dict[str, ScheduledJob]
) -> None:
    active_delete = reverse("admin:services_scheduledjob_delete", args=[jobs["events"].pk])
    inactive_delete = reverse("admin:services_scheduledjob_delete", args=[jobs["gone"].pk])

    assert admin_client.get(reverse("admin:services_scheduledjob_add")).status_code == 403
    assert admin_client.get(active_delete).status_code == 403
    assert admin_client.get(inactive_delete).status_code == 200


# --- runtime settings --------------------------------------------------------------------------


def add_setting(client: Client, key: str, value: str) -> Any:
    return client.post(reverse("admin:services_runtimesetting_add"), {"key": key, "value": value})


@pytest.mark.parametrize(
    ("key", "value", "field", "error"),
    [
        (EVENTS_DAYS, "abc", "value", f"{EVENTS_DAYS} must be of type int, got 'abc'"),
        (EVENTS_DAYS, "true", "value", f"{EVENTS_DAYS} must be a whole number, got True"),
        (EVENTS_DAYS, "1.5", "value", f"{EVENTS_DAYS} must be of type int, got 1.5"),
        (EVENTS_DAYS, "", "value", "This field is required."),
        ("retention.nope", "3", "key", "unknown setting 'retention.nope'; known settings: "),
    ],
)
def test_setting_form_refuses_with_a_field_error(
    admin_client: Client, key: str, value: str, field: str, error: str
) -> None:
    response = add_setting(admin_client, key, value)

    assert response.status_code == 200  # the form again, with its errors
    errors = response.context["adminform"].form.errors
    assert list(errors) == [field]
    assert errors[field][0].startswith(error)
    assert not RuntimeSetting.objects.exists()


def test_unknown_key_error_lists_the_known_keys(admin_client: Client) -> None:
    errors = add_setting(admin_client, "nope", "3").context["adminform"].form.errors

    assert EVENTS_DAYS in errors["key"][0]
    assert "retention.task_runs_days" in errors["key"][0]


def test_setting_form_accepts_a_valid_value(admin_client: Client) -> None:
    response = add_setting(admin_client, EVENTS_DAYS, " 7 ")

    assert response.status_code == 302
    assert RuntimeSetting.objects.get(key=EVENTS_DAYS).value == 7


def test_setting_change_page_shows_description_and_default_and_validates(
    admin_client: Client,
) -> None:
    setting = RuntimeSetting.objects.create(key=EVENTS_DAYS, value=10)
    url = reverse("admin:services_runtimesetting_change", args=[setting.pk])

    page = admin_client.get(url).content.decode()
    refused = admin_client.post(url, {"value": "-"})
    accepted = admin_client.post(url, {"value": "0"})

    assert "Days of alarm history to keep" in page and ">30<" in page
    assert refused.context["adminform"].form.errors["value"][0].startswith(EVENTS_DAYS)
    assert accepted.status_code == 302
    setting.refresh_from_db()
    assert (setting.key, setting.value) == (EVENTS_DAYS, 0)


def test_setting_add_page_lists_every_known_setting(admin_client: Client) -> None:
    page = admin_client.get(reverse("admin:services_runtimesetting_add")).content.decode()

    assert f"<code>{EVENTS_DAYS}</code> (default 30)" in page
    assert "<code>retention.task_runs_days</code> (default 30)" in page
