"""Number the change log in commit order (SourceEvent.sequence) and keep the counter."""

from django.db import migrations, models


def number_existing_events(apps, schema_editor):
    # Before this migration the log had one writer order to go by: its ids.
    SourceEvent = apps.get_model("catalog", "SourceEvent")
    EventSequence = apps.get_model("catalog", "EventSequence")
    SourceEvent.objects.update(sequence=models.F("id"))
    last = SourceEvent.objects.aggregate(last=models.Max("sequence"))["last"] or 0
    EventSequence.objects.create(id=1, last=last)


class Migration(migrations.Migration):
    dependencies = [("catalog", "0001_initial")]

    operations = [
        migrations.CreateModel(
            name="EventSequence",
            fields=[
                ("id", models.PositiveSmallIntegerField(default=1, primary_key=True, serialize=False)),
                ("last", models.BigIntegerField(default=0)),
            ],
        ),
        migrations.AddField(model_name="sourceevent", name="sequence", field=models.BigIntegerField(null=True)),
        migrations.RunPython(number_existing_events, migrations.RunPython.noop),
        migrations.AlterField(model_name="sourceevent", name="sequence", field=models.BigIntegerField(unique=True)),
        migrations.AlterModelOptions(name="sourceevent", options={"ordering": ("sequence",)}),
    ]
