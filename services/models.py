"""Durable state of the cron core: one ScheduledJob per registered task, one TaskRun per run."""

from __future__ import annotations

from django.db import models


class ScheduledJob(models.Model):
    """A registered task as the database knows it; synced from the registry at worker start."""

    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    schedule = models.CharField(max_length=300, blank=True, help_text="The schedule in words.")
    tags = models.JSONField(default=list, blank=True)
    active = models.BooleanField(
        default=True, help_text="False when the task is no longer in the code's registry."
    )
    paused = models.BooleanField(default=False, help_text="Paused jobs are not run on schedule.")
    next_run_at = models.DateTimeField(null=True, blank=True)
    # The latest slot claimed for this job: the anchor from which missed slots are counted.
    last_slot_at = models.DateTimeField(null=True, blank=True)
    # Set by "run now" in the admin; the worker is woken by NOTIFY and runs the job.
    run_requested_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class TaskRun(models.Model):
    class Source(models.TextChoices):
        SCHEDULED = "scheduled"
        MANUAL = "manual"
        CATCH_UP = "catch_up", "catch-up"

    class Status(models.TextChoices):
        RUNNING = "running"
        SUCCESS = "success"
        FAILURE = "failure"
        SKIPPED = "skipped"
        TIMEOUT = "timeout"

    job = models.ForeignKey(ScheduledJob, on_delete=models.CASCADE, related_name="runs")
    # The scheduled instant this run is for; NULL for manual runs. Unique per job, which is
    # what makes a slot run exactly once however many workers compete for it.
    slot = models.DateTimeField(null=True, blank=True)
    source = models.CharField(max_length=16, choices=Source.choices)
    worker_id = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices)
    attempt = models.PositiveIntegerField(default=1)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    duration = models.FloatField(null=True, blank=True, help_text="Seconds.")
    # While running, the worker renews this; a row whose lease ran out lost its worker.
    lease_until = models.DateTimeField(null=True, blank=True)
    result = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    traceback = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at"]
        constraints = [
            models.UniqueConstraint(fields=["job", "slot"], name="taskrun_one_per_slot"),
        ]
        indexes = [
            models.Index(fields=["job", "-started_at"], name="taskrun_job_recent"),
            models.Index(fields=["status", "-started_at"], name="taskrun_status_recent"),
            models.Index(
                fields=["job", "lease_until"],
                name="taskrun_running",
                condition=models.Q(status="running"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.job.name} @ {self.slot or self.started_at:%Y-%m-%d %H:%M:%S} {self.status}"


class RuntimeSetting(models.Model):
    """A setting operators change at runtime (retention days, ...). Code declares defaults."""

    key = models.CharField(max_length=100, unique=True)
    value = models.JSONField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["key"]

    def __str__(self) -> str:
        return f"{self.key} = {self.value!r}"
