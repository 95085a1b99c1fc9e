"""NOTIFY ``services_jobs`` when someone asks for "run now", so the worker wakes without polling."""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION services_job_run_requested() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('services_jobs', NEW.name);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER services_job_run_requested
AFTER INSERT OR UPDATE OF run_requested_at ON services_scheduledjob
FOR EACH ROW WHEN (NEW.run_requested_at IS NOT NULL)
EXECUTE FUNCTION services_job_run_requested();
"""

DROP = """
DROP TRIGGER IF EXISTS services_job_run_requested ON services_scheduledjob;
DROP FUNCTION IF EXISTS services_job_run_requested();
"""


class Migration(migrations.Migration):
    dependencies = [("services", "0001_initial")]

    operations = [migrations.RunSQL(CREATE, DROP)]
