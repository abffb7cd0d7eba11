"""How the catalog looks in GraphQL: types, inputs and filters."""

from __future__ import annotations

import datetime as dt
from typing import Any

import strawberry
import strawberry_django
from strawberry import auto

from catalog import models
from catalog.models import DeliveryStatus, SourceEventKind, SourceStatus
from catalog.services import PATCHABLE_FIELDS

SourceStatusEnum = strawberry.enum(SourceStatus, name="SourceStatus")
DeliveryStatusEnum = strawberry.enum(DeliveryStatus, name="DeliveryStatus")
SourceEventKindEnum = strawberry.enum(SourceEventKind, name="SourceEventKind")


def _parse_date(value: object) -> object:
    # Deliberately lenient: a value that is no ISO date is handed on unchanged, so the
    # mutation reports it as a typed `invalid` error on its field (OperationInfo) instead of
    # failing the whole request before the resolver runs.
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            return value
    return str(value)


DateScalar = strawberry.scalar(
    name="Date",
    description='ISO 8601 date, "2026-11-21". An invalid date in a mutation input is '
    "reported as an OperationInfo message with code `invalid` on its field.",
    serialize=dt.date.isoformat,
    parse_value=_parse_date,
)


@strawberry_django.type(models.Source, name="Source")
class SourceType:
    """A vendor's data subscription for a country and panel."""

    id: strawberry.ID
    created_at: auto
    updated_at: auto
    created_by: auto
    country: auto
    data_vendor: auto
    panel: auto
    panel_group: auto
    scope_of_subscription: auto
    data_type: auto
    granularity: auto
    end_date: auto
    current_update: auto = strawberry_django.field(description="Date of the last delivery.")
    next_update: auto = strawberry_django.field(description="Date of the next expected delivery.")
    next_status: str = strawberry_django.field(
        only=["next_update"],
        description='"unscheduled" when nextUpdate is null, else nextUpdate as an ISO date.',
    )
    delivery_status: DeliveryStatusEnum = strawberry_django.field(
        only=["current_update"],
        description="currentUpdate against today in the project time zone, at read time.",
    )
    status: SourceStatusEnum
    version: int = strawberry_django.field(description="Starts at 1, +1 on every change.")


@strawberry_django.type(models.SourceEvent, name="SourceEvent")
class SourceEventType:
    """One committed change to a source."""

    cursor: str = strawberry_django.field(
        only=["sequence", "source_id", "version", "occurred_at"],
        description="Opaque; sorts (as a string) in delivery order. Resume after it with sourceEvents(after:).",
    )
    kind: SourceEventKindEnum
    source_id: strawberry.ID
    source: SourceType | None = strawberry_django.field(
        only=["snapshot"],
        description="The source exactly as this change left it; null for DELETED.",
    )
    version: int = strawberry_django.field(description="The source's version after this change.")
    occurred_at: auto
    actor: str | None = strawberry_django.field(
        description="Username of who made the change; null when no user (shell, jobs)."
    )


@strawberry.type(name="MetricCounter")
class MetricCounterType:
    key: str
    label: str
    window_days: int
    count: int


@strawberry.type(name="MetricSection")
class MetricSectionType:
    key: str
    title: str
    counters: list[MetricCounterType]


@strawberry.type(name="DataLibrary", description="Live counters over the sources.")
class DataLibraryType:
    window_days: int = strawberry.field(description="Days in the window, today (project time zone) included.")
    generated_at: dt.datetime
    sections: list[MetricSectionType]


@strawberry.type(name="DeletedSource")
class DeletedSourceType:
    id: strawberry.ID


@strawberry_django.filter_type(models.Source, name="SourceFilter", lookups=False)
class SourceFilter:
    """Exact-match filters; all given ones must match."""

    status: SourceStatusEnum | None
    country: auto
    data_vendor: auto
    panel_group: auto
    panel: auto
    granularity: auto


@strawberry.input(name="SourceInput")
class SourceInput:
    country: str
    data_vendor: str
    panel: str
    data_type: str
    created_by: str | None = strawberry.field(
        default=None,
        description="Defaults to the signed-in user's username; required when there is none.",
    )
    panel_group: str = "DKM"
    scope_of_subscription: str = ""
    granularity: str = "National"
    end_date: dt.date | None = None
    current_update: dt.date | None = None
    next_update: dt.date | None = None
    status: SourceStatusEnum = SourceStatus.ACTIVE


@strawberry.input(
    name="SourcePatch",
    description="Fields to change: an absent field is unchanged, an explicit null date clears it. "
    "Status changes through activateSource, deactivateSource and reactivateSource.",
)
class SourcePatch:
    country: str | None = strawberry.UNSET
    data_vendor: str | None = strawberry.UNSET
    panel: str | None = strawberry.UNSET
    panel_group: str | None = strawberry.UNSET
    scope_of_subscription: str | None = strawberry.UNSET
    data_type: str | None = strawberry.UNSET
    granularity: str | None = strawberry.UNSET
    end_date: dt.date | None = strawberry.UNSET
    current_update: dt.date | None = strawberry.UNSET
    next_update: dt.date | None = strawberry.UNSET

    def changes(self) -> dict[str, Any]:
        """Return the fields the client sent, explicit nulls included."""
        return {name: getattr(self, name) for name in PATCHABLE_FIELDS if getattr(self, name) is not strawberry.UNSET}
