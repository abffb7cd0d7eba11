"""The load_demo_data command: what it loads, and that it loads it once."""

from __future__ import annotations

from collections import Counter
from io import StringIO

import pytest
from django.core.management import call_command

from catalog.models import Source, SourceEvent
from catalog.selectors import data_library

LOADED = "Loaded 36 demo sources (24 active, 12 inactive, 66 change events).\n"


def load_demo_data(*args: str) -> str:
    """Run the command and return what it printed."""
    out = StringIO()
    call_command("load_demo_data", *args, stdout=out)
    return out.getvalue()


def demo_rows() -> list[tuple[object, ...]]:
    """Return every source's fields except its id and timestamps, in a stable order."""
    fields = ("country", "data_vendor", "panel", "panel_group", "data_type", "granularity")
    dates = ("end_date", "current_update", "next_update", "status", "version")
    return sorted(Source.objects.values_list(*fields, *dates))


@pytest.mark.django_db
def test_load_demo_data_loads_every_status_and_transition() -> None:
    output = load_demo_data()

    assert output == LOADED
    sources = list(Source.objects.all())
    assert len(sources) == 36
    assert Counter(source.delivery_status for source in sources) == {
        "RECEIVED": 6,
        "AWAITING": 6,
        "DELAYED": 12,
        "UNKNOWN": 12,
    }
    assert Counter(source.status for source in sources) == {"ACTIVE": 24, "INACTIVE": 12}
    assert {source.created_by for source in sources} == {"demo"}
    assert len({source.country for source in sources}) == 8


@pytest.mark.django_db
def test_load_demo_data_records_each_change_as_an_event() -> None:
    load_demo_data()

    events = list(SourceEvent.objects.order_by("id"))
    assert Counter(event.kind for event in events) == {
        "CREATED": 36,
        "UPDATED": 6,
        "ACTIVATED": 6,
        "DEACTIVATED": 12,
        "REACTIVATED": 6,
    }
    assert {event.actor for event in events} == {"demo"}
    latest_versions = {event.source_id: event.version for event in events}
    assert latest_versions == {source.pk: source.version for source in Source.objects.all()}


@pytest.mark.django_db
def test_load_demo_data_makes_every_data_library_counter_non_zero() -> None:
    load_demo_data()

    counts = {counter.key: counter.count for section in data_library().sections for counter in section.counters}
    assert counts == {
        "created": 36,
        "activated": 30,
        "deactivated": 12,
        "received": 4,
        "awaiting": 4,
        "delayed": 8,
        "pending": 8,
        "in_progress": 8,
        "completed": 8,
    }


@pytest.mark.django_db
def test_load_demo_data_twice_adds_nothing() -> None:
    load_demo_data()
    rows = demo_rows()

    output = load_demo_data()

    assert output == "Demo data is already present (36 sources); use --reset to reload it.\n"
    assert demo_rows() == rows
    assert SourceEvent.objects.count() == 66


@pytest.mark.django_db
def test_load_demo_data_reset_reloads_the_same_data() -> None:
    load_demo_data()
    rows = demo_rows()
    first_ids = set(Source.objects.values_list("pk", flat=True))

    output = load_demo_data("--reset")

    assert output == LOADED
    assert Source.objects.count() == 36
    assert demo_rows() == rows
    assert first_ids.isdisjoint(Source.objects.values_list("pk", flat=True))
    assert SourceEvent.objects.count() == 66
    assert SourceEvent.objects.filter(source_id__in=first_ids).count() == 0
