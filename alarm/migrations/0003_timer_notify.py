"""NOTIFY ``alarm_timers`` whenever a timer row is scheduled, moved or no longer scheduled.

Three tables hold the alarm's durable timers: rule runtimes (``scheduled_for`` while
``status = 'scheduled'``), pending actions (``fire_at`` while ``status = 'scheduled'``) and the
alarm state (``delay_until`` while not null). The payload is tiny (PostgreSQL caps it at 8000
bytes): ``"<kind> <id> <epoch seconds of the due time>"`` for a scheduled row, ``"<kind> <id>
cancel"`` for a row that stopped being scheduled (fired, cancelled, deleted), e.g.
``"action 42 1748865600.123456"``. The worker puts the first on its heap and takes the second
off; the tables stay the truth (the worker re-reads them after every reconnect).

Triggers, not application code, so the ORM, the admin, ``queryset.update()``, raw SQL and
other services all reach the worker alike. An update that changes neither the status nor the
due time (a ``save()`` of an unchanged row) stays silent. NOTIFY is delivered on commit.
"""

from django.db import migrations

TABLES = [
    # (kind, table, due column, "is scheduled" test on a row variable)
    ("runtime", "alarm_ruleruntime", "scheduled_for", "{row}.status = 'scheduled'"),
    ("action", "alarm_pendingaction", "fire_at", "{row}.status = 'scheduled'"),
    ("alarm", "alarm_alarmstate", "delay_until", "{row}.delay_until IS NOT NULL"),
]


def create(kind: str, table: str, due: str, scheduled: str) -> str:
    new, old = scheduled.format(row="NEW"), scheduled.format(row="OLD")
    function = f"{table}_timer_notify"
    return f"""
CREATE OR REPLACE FUNCTION {function}() RETURNS trigger AS $$
BEGIN
    IF TG_OP <> 'DELETE' AND {new} THEN
        PERFORM pg_notify(
            'alarm_timers', '{kind} ' || NEW.id::text || ' ' || extract(epoch from NEW.{due})::text
        );
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('alarm_timers', '{kind} ' || OLD.id::text || ' cancel');
    ELSE
        PERFORM pg_notify('alarm_timers', '{kind} ' || NEW.id::text || ' cancel');
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER {table}_timer_insert AFTER INSERT ON {table}
FOR EACH ROW WHEN ({new}) EXECUTE FUNCTION {function}();

CREATE TRIGGER {table}_timer_update AFTER UPDATE ON {table}
FOR EACH ROW WHEN (
    ({old} OR {new})
    AND (({old}) IS DISTINCT FROM ({new}) OR OLD.{due} IS DISTINCT FROM NEW.{due})
) EXECUTE FUNCTION {function}();

CREATE TRIGGER {table}_timer_delete AFTER DELETE ON {table}
FOR EACH ROW WHEN ({old}) EXECUTE FUNCTION {function}();
"""


def drop(table: str) -> str:
    return f"""
DROP TRIGGER IF EXISTS {table}_timer_delete ON {table};
DROP TRIGGER IF EXISTS {table}_timer_update ON {table};
DROP TRIGGER IF EXISTS {table}_timer_insert ON {table};
DROP FUNCTION IF EXISTS {table}_timer_notify();
"""


class Migration(migrations.Migration):
    dependencies = [("alarm", "0002_timers_and_panel")]

    operations = [
        migrations.RunSQL(create(kind, table, due, scheduled), drop(table))
        for kind, table, due, scheduled in TABLES
    ]
