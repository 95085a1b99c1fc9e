"""Fewer index and constraint writes per delivery; vacuum that keeps up with the churn.

Every delivery is updated twice (claim, result) and neither update can be HOT: ``status``
changes, and ``status`` is in the predicate of the partial indexes the claim needs. So each
index is written on each update; this migration removes two that the worker never reads:

- ``unique=True`` on ``idempotency_key`` becomes a UniqueConstraint: the same unique index,
  without the second ``varchar_pattern_ops`` (LIKE) index Django adds for unique text fields.
- ``(status, updated_at)`` becomes ``(updated_at) WHERE status IN ('sent', 'dead')``, all the
  retention cleanup needs; claims no longer write it, and no planner can take it for the claim.

The attempt log loses its foreign-key constraints (the columns, indexes and Django's cascades
stay): the worker inserts its rows in the statement that updates their delivery, and the two
constraint checks per row cost several times the insert itself.

Each delivery leaves two dead row versions and their index entries behind, which only VACUUM
removes; after a burst they slow the claim's index scans. The defaults (20 % of the table)
would let a table of 30 days of history collect a great many before vacuuming, so the table
is vacuumed after 1,000 dead rows plus 1 % and analyzed as often. These settings need
autovacuum itself on (``SHOW autovacuum``); a server with it off ignores them.
"""

import django.db.models.deletion
import notifications.models
from django.db import migrations, models

TABLE = "notifications_notificationdelivery"
STORAGE = (
    "autovacuum_vacuum_threshold = 1000, autovacuum_vacuum_scale_factor = 0.01, "
    "autovacuum_analyze_threshold = 1000, autovacuum_analyze_scale_factor = 0.01"
)
RESET = (
    "autovacuum_vacuum_threshold, autovacuum_vacuum_scale_factor, "
    "autovacuum_analyze_threshold, autovacuum_analyze_scale_factor"
)


class Migration(migrations.Migration):
    dependencies = [("notifications", "0002_outbox_notify")]

    operations = [
        migrations.RemoveIndex(model_name="notificationdelivery", name="delivery_status_updated"),
        migrations.AlterField(
            model_name="notificationdelivery",
            name="idempotency_key",
            field=models.CharField(
                default=notifications.models.new_idempotency_key, max_length=200
            ),
        ),
        migrations.AddIndex(
            model_name="notificationdelivery",
            index=models.Index(
                condition=models.Q(("status__in", ["sent", "dead"])),
                fields=["updated_at"],
                name="delivery_finished_updated",
            ),
        ),
        migrations.AddConstraint(
            model_name="notificationdelivery",
            constraint=models.UniqueConstraint(
                fields=("idempotency_key",), name="delivery_idempotency_key"
            ),
        ),
        migrations.AlterField(
            model_name="notificationlog",
            name="delivery",
            field=models.ForeignKey(
                db_constraint=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="logs",
                to="notifications.notificationdelivery",
            ),
        ),
        migrations.AlterField(
            model_name="notificationlog",
            name="provider",
            field=models.ForeignKey(
                db_constraint=False,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="logs",
                to="notifications.notificationprovider",
            ),
        ),
        migrations.RunSQL(
            f"ALTER TABLE {TABLE} SET ({STORAGE})", f"ALTER TABLE {TABLE} RESET ({RESET})"
        ),
    ]
