"""The GraphQL entry points: Query, Mutation, and the root schema."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import strawberry
import strawberry_django
from asgiref.sync import sync_to_async
from strawberry.types import Info
from strawberry_django.optimizer import DjangoOptimizerExtension, optimize
from strawberry_django.pagination import OffsetPaginationInput

from catalog import selectors, services
from graph.context import actor_name
from graph.errors import ErrorCodes, Schema
from graph.execution import LiveExecutionContext
from graph.limits import document_limits
from graph.listing import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, page, sources_queryset
from graph.permissions import ADD_SOURCE, CHANGE_SOURCE, DELETE_SOURCE, VIEW_SOURCE, arequire, require
from graph.session import SessionMutation, SessionQuery
from graph.subscriptions import Subscription
from graph.types import (
    DataLibraryType,
    DateScalar,
    DeletedSourceType,
    SourceFilter,
    SourceInput,
    SourcePatch,
    SourceType,
)

SourceId = Annotated[strawberry.ID, strawberry.argument(description="The source's UUID.")]


@strawberry.type
class Query(SessionQuery):
    @strawberry_django.field(description=f"One source; null when there is no source with this id. Needs {VIEW_SOURCE}.")
    def source(self, info: Info, id: SourceId) -> SourceType | None:  # noqa: A002
        require(info, VIEW_SOURCE)
        return selectors.source_get(id)

    @strawberry_django.field(
        description=f"Sources, newest first; {DEFAULT_PAGE_SIZE} per page unless "
        f"pagination.limit says otherwise (at most {MAX_PAGE_SIZE}). Needs {VIEW_SOURCE}."
    )
    def sources(
        self,
        info: Info,
        filters: SourceFilter | None = None,
        pagination: OffsetPaginationInput | None = None,
    ) -> list[SourceType]:
        require(info, VIEW_SOURCE)
        # Evaluated here: strawberry-django would filter the returned queryset again, after
        # the slice, which Django refuses.
        return list(page(optimize(sources_queryset(filters, info), info), pagination))

    @strawberry.field(description=f"The data library's counters now. Needs {VIEW_SOURCE}.")
    async def data_library(self, info: Info) -> DataLibraryType:
        await arequire(info, VIEW_SOURCE)
        return await sync_to_async(selectors.data_library)()


@strawberry.type
class Mutation(SessionMutation):
    @strawberry_django.mutation(description=f"Create a source. Needs {ADD_SOURCE}.")
    def add_source(self, info: Info, data: Annotated[SourceInput, strawberry.argument(name="input")]) -> SourceType:
        require(info, ADD_SOURCE)
        return services.source_create(actor=actor_name(info), **strawberry.asdict(data))

    @strawberry_django.mutation(
        description="Change some fields of a source. With expectedVersion, refuse with "
        f"version_conflict when the source has changed since that version. Needs {CHANGE_SOURCE}."
    )
    def update_source(
        self,
        info: Info,
        id: SourceId,  # noqa: A002
        data: Annotated[SourcePatch, strawberry.argument(name="input")],
        expected_version: int | None = None,
    ) -> SourceType:
        require(info, CHANGE_SOURCE)
        return services.source_update(
            actor=actor_name(info), source_id=id, data=data.changes(), expected_version=expected_version
        )

    @strawberry_django.mutation(
        description=f"Make an INACTIVE source that has never been active ACTIVE. Needs {CHANGE_SOURCE}."
    )
    def activate_source(self, info: Info, id: SourceId) -> SourceType:  # noqa: A002
        require(info, CHANGE_SOURCE)
        return services.source_activate(actor=actor_name(info), source_id=id)

    @strawberry_django.mutation(description=f"Make an ACTIVE source INACTIVE. Needs {CHANGE_SOURCE}.")
    def deactivate_source(self, info: Info, id: SourceId) -> SourceType:  # noqa: A002
        require(info, CHANGE_SOURCE)
        return services.source_deactivate(actor=actor_name(info), source_id=id)

    @strawberry_django.mutation(
        description=f"Make an INACTIVE source that was active before ACTIVE again. Needs {CHANGE_SOURCE}."
    )
    def reactivate_source(self, info: Info, id: SourceId) -> SourceType:  # noqa: A002
        require(info, CHANGE_SOURCE)
        return services.source_reactivate(actor=actor_name(info), source_id=id)

    @strawberry_django.mutation(description=f"Delete a source; its change log stays. Needs {DELETE_SOURCE}.")
    def delete_source(self, info: Info, id: SourceId) -> DeletedSourceType:  # noqa: A002
        require(info, DELETE_SOURCE)
        return DeletedSourceType(id=strawberry.ID(str(services.source_delete(actor=actor_name(info), source_id=id))))


schema = Schema(
    query=Query,
    mutation=Mutation,
    subscription=Subscription,
    extensions=[*document_limits(), DjangoOptimizerExtension, ErrorCodes],
    scalar_overrides={dt.date: DateScalar},
    execution_context_class=LiveExecutionContext,
)
