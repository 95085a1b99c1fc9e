"""Runtime settings of the integrations (stored in ``RuntimeSetting``; these are the defaults).

Imported by ``services.integrations.tasks`` so the declarations exist wherever the tasks do.
"""

from __future__ import annotations

from services.runtime_settings import declare

FRIGATE_DETECTIONS_RETENTION = declare(
    "retention.frigate_detections_days",
    14,
    "Days of Frigate detections to keep; cleanup_frigate_detections deletes older ones. "
    "<= 0 keeps all.",
)
