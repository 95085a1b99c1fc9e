"""NOTIFY ``integrations_config`` with the kind whenever a configuration row changes.

The payload is the kind (``mqtt``, ``zigbee2mqtt``, ...): the worker re-reads that row and
restarts that integration's component only if its settings really changed. A kind change of a
row (unusual, but possible in SQL) notifies both kinds. Fires for the ORM, the admin, SQL and
other services alike; delivered on commit, identical ones in one transaction merged.
"""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION integrations_config_changed() RETURNS trigger AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        PERFORM pg_notify('integrations_config', OLD.kind);
    END IF;
    IF TG_OP <> 'DELETE' THEN
        PERFORM pg_notify('integrations_config', NEW.kind);
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER integrations_config_changed
AFTER INSERT OR UPDATE OR DELETE ON integrations_integrationconfig
FOR EACH ROW EXECUTE FUNCTION integrations_config_changed();

-- TRUNCATE has no rows: tell every kind.
CREATE OR REPLACE FUNCTION integrations_config_truncated() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('integrations_config', '*');
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER integrations_config_truncated
AFTER TRUNCATE ON integrations_integrationconfig
FOR EACH STATEMENT EXECUTE FUNCTION integrations_config_truncated();
"""

DROP = """
DROP TRIGGER IF EXISTS integrations_config_truncated ON integrations_integrationconfig;
DROP TRIGGER IF EXISTS integrations_config_changed ON integrations_integrationconfig;
DROP FUNCTION IF EXISTS integrations_config_truncated();
DROP FUNCTION IF EXISTS integrations_config_changed();
"""


class Migration(migrations.Migration):
    dependencies = [("integrations", "0001_initial")]

    operations = [migrations.RunSQL(CREATE, DROP)]
