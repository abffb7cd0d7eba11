"""Sources for the tests: the fields of a valid one, and the state of the whole catalog."""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async

from catalog.models import Source, SourceEvent


def source_values(**overrides: Any) -> dict[str, Any]:
    """Return the fields of a valid source for Source.objects.create or services.source_create."""
    return {
        "created_by": "tests",
        "country": "France",
        "data_vendor": "IQVIA",
        "panel": "Retail",
        "data_type": "Sales",
    } | overrides


@sync_to_async
def catalog_state() -> tuple[list[tuple[Any, ...]], int]:
    """Return every source's stored values and the number of logged events."""
    return list(Source.objects.order_by("pk").values_list()), SourceEvent.objects.count()
