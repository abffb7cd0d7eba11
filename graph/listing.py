"""The source list, shared by the `sources` query and the live `sources` subscription."""

from __future__ import annotations

import strawberry
import strawberry_django
from django.db.models import QuerySet
from strawberry.types import Info
from strawberry_django.pagination import OffsetPaginationInput

from catalog.models import Source
from graph.errors import invalid
from graph.types import SourceFilter

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


def sources_queryset(filters: SourceFilter | None, info: Info | None = None) -> QuerySet[Source]:
    """Return the sources matching `filters`, newest first."""
    if filters is not None and _has_nul(strawberry.asdict(filters)):
        # PostgreSQL refuses NUL in a text parameter; nothing stored can contain one anyway.
        raise invalid("filters: text may not contain NUL characters.")
    return strawberry_django.filters.apply(filters, Source.objects.order_by("-created_at", "-id"), info)


def page(queryset: QuerySet[Source], pagination: OffsetPaginationInput | None) -> QuerySet[Source]:
    """Slice one page, refusing what the database would choke on."""
    offset = pagination.offset if pagination else 0
    limit = pagination.limit if pagination and pagination.limit not in (None, strawberry.UNSET) else DEFAULT_PAGE_SIZE
    if offset < 0:
        raise invalid(f"pagination.offset must be 0 or more, not {offset}.")
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise invalid(f"pagination.limit must be between 1 and {MAX_PAGE_SIZE}, not {limit}.")
    return queryset[offset : offset + limit]


def _has_nul(value: object) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(item) for item in value.values())
    if isinstance(value, list | tuple):
        return any(_has_nul(item) for item in value)
    return False
