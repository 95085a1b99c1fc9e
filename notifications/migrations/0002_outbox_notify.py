"""NOTIFY ``notifications_outbox`` whenever a delivery becomes pending, so any writer wakes the worker.

The payload is ``"<id> <epoch seconds of next_attempt_at>"`` (e.g. ``"42 1748865600.123456"``):
tiny (PostgreSQL caps payloads at 8000 bytes), and enough for the worker to drain at once when
the row is due or to put its time on the timer heap when it is not. The table stays the truth.

The trigger lives in the database, so the ORM, the admin, ``queryset.update()``, raw SQL and
other services all wake the worker alike. It fires on INSERT of a pending row and on an UPDATE
that puts a row back to pending or moves a pending row's next_attempt_at (retry, requeue,
"retry now"). An update that changes neither (e.g. a pending row's title, or ``save()`` of an
unchanged row) stays silent: the worker already knows that row. NOTIFY is delivered on commit,
and PostgreSQL merges identical notifications of one transaction.
"""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION notifications_delivery_pending() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify(
        'notifications_outbox',
        NEW.id::text || ' ' || extract(epoch from NEW.next_attempt_at)::text
    );
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER notifications_delivery_pending_insert
AFTER INSERT ON notifications_notificationdelivery
FOR EACH ROW WHEN (NEW.status = 'pending')
EXECUTE FUNCTION notifications_delivery_pending();

-- WHEN of an INSERT trigger cannot see OLD, hence a second trigger for updates. Comparing OLD
-- and NEW keeps an ORM save() (which writes every column) of an unchanged row quiet.
CREATE TRIGGER notifications_delivery_pending_update
AFTER UPDATE OF status, next_attempt_at ON notifications_notificationdelivery
FOR EACH ROW WHEN (
    NEW.status = 'pending'
    AND (OLD.status IS DISTINCT FROM NEW.status
         OR OLD.next_attempt_at IS DISTINCT FROM NEW.next_attempt_at)
)
EXECUTE FUNCTION notifications_delivery_pending();
"""

DROP = """
DROP TRIGGER IF EXISTS notifications_delivery_pending_update ON notifications_notificationdelivery;
DROP TRIGGER IF EXISTS notifications_delivery_pending_insert ON notifications_notificationdelivery;
DROP FUNCTION IF EXISTS notifications_delivery_pending();
"""


class Migration(migrations.Migration):
    dependencies = [("notifications", "0001_initial")]

    operations = [migrations.RunSQL(CREATE, DROP)]
