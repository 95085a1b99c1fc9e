"""Runtime settings of the notification outbox (stored in ``RuntimeSetting``; these are defaults).

Imported by ``notifications.tasks`` so the declarations exist whenever the tasks that read them do.
"""

from __future__ import annotations

from services.runtime_settings import declare

NOTIFICATION_DELIVERIES_RETENTION = declare(
    "retention.notification_deliveries_days",
    30,
    "Days to keep sent and dead notification deliveries (counted from their last update); "
    "cleanup_notification_deliveries deletes older ones with their logs. Pending and sending "
    "deliveries are never deleted. <= 0 keeps all.",
)
NOTIFICATION_LOGS_RETENTION = declare(
    "retention.notification_logs_days",
    30,
    "Days of notification attempt logs to keep; cleanup_notification_logs deletes older ones. "
    "<= 0 keeps all.",
)
