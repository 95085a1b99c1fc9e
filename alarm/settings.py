"""Runtime settings of the alarm app (stored in ``RuntimeSetting``; these are the defaults).

Imported by ``alarm.tasks`` so the declarations exist whenever the tasks that read them do.
"""

from __future__ import annotations

from services.runtime_settings import declare

ALARM_EVENTS_RETENTION = declare(
    "retention.alarm_events_days",
    30,
    "Days of alarm history to keep; cleanup_old_events deletes older events. <= 0 keeps all.",
)
PENDING_ACTIONS_RETENTION = declare(
    "retention.pending_actions_days",
    14,
    "Days to keep pending actions that fired, failed or were cancelled; "
    "cleanup_finished_pending_actions deletes older ones. <= 0 keeps all.",
)
RULE_ACTION_LOGS_RETENTION = declare(
    "retention.rule_action_logs_days",
    14,
    "Days of rule action logs to keep; cleanup_rule_action_logs deletes older ones. "
    "<= 0 keeps all.",
)
