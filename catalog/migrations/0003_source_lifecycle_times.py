"""Keep when each source was last activated and deactivated (Source.last_activated_at, ...).

The data library counts from these instead of the change log. Existing sources get them from
their log: the latest activation (ACTIVATED, REACTIVATED, or CREATED with an ACTIVE snapshot)
and the latest DEACTIVATED event.
"""

from django.db import migrations, models

ACTIVATIONS = ("ACTIVATED", "REACTIVATED")


def times_from_the_log(apps, schema_editor):
    # One UPDATE with a correlated subquery per field, whatever the number of sources, in the
    # SQL that Django writes for the database: reading the snapshot's status is `->>` on
    # PostgreSQL and json_extract() on SQLite (whose `->>` needs SQLite 3.38; Django 5.2
    # supports 3.31), which one hand-written statement could not serve both.
    Source = apps.get_model("catalog", "Source")
    SourceEvent = apps.get_model("catalog", "SourceEvent")
    db = schema_editor.connection.alias

    def latest(events):
        of_source = events.using(db).filter(source_id=models.OuterRef("pk"))
        return models.Subquery(of_source.order_by("-occurred_at").values("occurred_at")[:1])

    activations = models.Q(kind__in=ACTIVATIONS) | models.Q(kind="CREATED", snapshot__status="ACTIVE")
    Source.objects.using(db).update(
        last_activated_at=latest(SourceEvent.objects.filter(activations)),
        last_deactivated_at=latest(SourceEvent.objects.filter(kind="DEACTIVATED")),
    )


class Migration(migrations.Migration):
    dependencies = [("catalog", "0002_event_sequence")]

    operations = [
        migrations.AddField(
            model_name="source",
            name="last_activated_at",
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
        migrations.AddField(
            model_name="source",
            name="last_deactivated_at",
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
        # Dropping the fields is the whole way back.
        migrations.RunPython(times_from_the_log, migrations.RunPython.noop),
    ]
