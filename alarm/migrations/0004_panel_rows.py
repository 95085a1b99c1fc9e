"""The panel's one state row (disarmed) and one settings row (the defaults)."""

from django.db import migrations
from django.utils import timezone


def create_rows(apps, schema_editor):
    AlarmState = apps.get_model("alarm", "AlarmState")
    AlarmSettings = apps.get_model("alarm", "AlarmSettings")
    AlarmState.objects.get_or_create(pk=1, defaults={"changed_at": timezone.now()})
    AlarmSettings.objects.get_or_create(pk=1)


class Migration(migrations.Migration):
    dependencies = [("alarm", "0003_timer_notify")]

    operations = [migrations.RunPython(create_rows, migrations.RunPython.noop)]
