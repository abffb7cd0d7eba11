"""Concurrent writers: one transition wins, and no concurrent edit is lost."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.db import connection

from catalog import services
from catalog.models import Source, SourceEvent, SourceEventKind, SourceStatus
from tests.support.sources import source_values

pytestmark = pytest.mark.django_db(transaction=True)


def run_at_once(*calls: Callable[[], Any]) -> list[Any]:
    """Run each call on its own thread and connection, released together; return results or errors."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(index: int, call: Callable[[], Any]) -> None:
        try:
            barrier.wait()
            results[index] = call()
        except Exception as error:
            results[index] = error
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_two_concurrent_deactivations_exactly_one_succeeds() -> None:
    source = services.source_create(actor=None, **source_values())

    def deactivate() -> Source:
        return services.source_deactivate(actor=None, source_id=source.pk)

    results = run_at_once(deactivate, deactivate)

    succeeded = [r for r in results if isinstance(r, Source)]
    refused = [r for r in results if isinstance(r, ValidationError)]
    assert len(succeeded) == 1
    assert len(refused) == 1
    assert refused[0].message_dict == {"id": ["Only an ACTIVE source can be deactivated; this source is INACTIVE."]}
    assert refused[0].error_dict["id"][0].code == "invalid_transition"
    source.refresh_from_db()
    assert (source.status, source.version) == (SourceStatus.INACTIVE, 2)
    assert list(SourceEvent.objects.values_list("kind", "version")) == [
        (SourceEventKind.CREATED, 1),
        (SourceEventKind.DEACTIVATED, 2),
    ]


def test_a_concurrent_edit_and_transition_both_take_effect() -> None:
    source = services.source_create(actor=None, **source_values())

    results = run_at_once(
        lambda: services.source_update(actor=None, source_id=source.pk, data={"country": "Spain"}),
        lambda: services.source_deactivate(actor=None, source_id=source.pk),
    )

    assert all(isinstance(r, Source) for r in results), results
    source.refresh_from_db()
    assert (source.country, source.status, source.version) == ("Spain", SourceStatus.INACTIVE, 3)
    assert sorted(SourceEvent.objects.values_list("version", flat=True)) == [1, 2, 3]
