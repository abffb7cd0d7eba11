"""Plain ORM code with an instance older than the row still logs each change exactly."""

from __future__ import annotations

import pytest

from catalog import services
from catalog.models import Source, SourceEvent, SourceEventKind, SourceStatus
from tests.support.sources import source_values

pytestmark = pytest.mark.django_db


def test_deleting_an_outdated_instance_logs_the_deletion_after_the_latest_version() -> None:
    source = services.source_create(actor=None, **source_values())
    outdated = Source.objects.get(pk=source.pk)
    services.source_update(actor=None, source_id=source.pk, data={"country": "Spain"})

    outdated.delete()

    assert list(SourceEvent.objects.values_list("kind", "version")) == [
        (SourceEventKind.CREATED, 1),
        (SourceEventKind.UPDATED, 2),
        (SourceEventKind.DELETED, 3),
    ]


def test_saving_an_outdated_instance_keeps_a_status_changed_since() -> None:
    source = services.source_create(actor=None, **source_values())
    outdated = Source.objects.get(pk=source.pk)
    services.source_deactivate(actor=None, source_id=source.pk)

    outdated.country = "Spain"
    outdated.save()

    source.refresh_from_db()
    assert (source.country, source.status, source.version) == ("Spain", SourceStatus.INACTIVE, 3)
    assert SourceEvent.objects.get(version=3).kind == SourceEventKind.UPDATED


def test_a_status_set_by_orm_code_is_logged_as_the_transition_it_makes() -> None:
    source = Source.objects.create(**source_values(status=SourceStatus.INACTIVE))
    for status in (SourceStatus.ACTIVE, SourceStatus.INACTIVE, SourceStatus.ACTIVE):
        source.status = status
        source.save()

    assert list(SourceEvent.objects.values_list("kind", "version")) == [
        (SourceEventKind.CREATED, 1),
        (SourceEventKind.ACTIVATED, 2),
        (SourceEventKind.DEACTIVATED, 3),
        (SourceEventKind.REACTIVATED, 4),
    ]


def test_an_event_snapshot_keeps_the_exact_times() -> None:
    source = services.source_create(actor=None, **source_values())
    snapshot = SourceEvent.objects.get().source
    source.refresh_from_db()
    assert (snapshot.created_at, snapshot.updated_at) == (source.created_at, source.updated_at)
