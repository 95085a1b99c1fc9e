"""The last known status of each integration, for the web process's snapshots.

Written by the worker's status hub only when a status changes (never at idle); read by the
WebSocket consumer on connect. One row per integration.
"""

from __future__ import annotations

from django.db import models


class IntegrationStatusRecord(models.Model):
    integration = models.CharField(max_length=32, primary_key=True)
    configured = models.BooleanField(default=False)
    enabled = models.BooleanField(default=False)
    link = models.CharField(max_length=16, default="idle")
    available = models.BooleanField(null=True, blank=True)
    state = models.CharField(max_length=16, default="unconfigured")
    since = models.DateTimeField(null=True, blank=True)
    last_connect_at = models.DateTimeField(null=True, blank=True)
    last_disconnect_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    details = models.JSONField(default=dict, blank=True)
    # An integration_offline AlarmEvent was recorded and no integration_recovered yet: kept
    # across worker restarts so that one outage records one event of each.
    offline_reported = models.BooleanField(default=False)
    # The sequence number of the system_status push that carried this row's latest change.
    sequence = models.BigIntegerField(default=0)
    worker_id = models.CharField(max_length=200, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["integration"]
        verbose_name = "integration status"
        verbose_name_plural = "integration statuses"

    def __str__(self) -> str:
        return f"{self.integration}: {self.state}"
