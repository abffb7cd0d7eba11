"""The subscriptions: each run (one per cohort, graph.cohorts) sends now, then follows the change feed."""

from __future__ import annotations

import contextlib
import functools
import json
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Annotated, TypeVar

import strawberry
from strawberry.types import Info
from strawberry_django.pagination import OffsetPaginationInput

from catalog import selectors
from catalog.models import Source, SourceEvent, parse_source_id, project_today
from graph.cohorts import LiveRun
from graph.errors import cursor_unknown, invalid
from graph.fanout import shared
from graph.feed import change_feed
from graph.listing import page, sources_queryset
from graph.metrics import COALESCED
from graph.permissions import VIEW_SOURCE, arequire
from graph.types import DataLibraryType, SourceEventKindEnum, SourceEventType, SourceFilter, SourceType
from graph.worker import in_worker

T = TypeVar("T")

# In the context of a resuming subscriber's own run (graph.resume): replay the log up to this
# position, then end; the cohort the subscriber then joins sends every change after it.
REPLAY_UNTIL = "replay_until"


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description="Every committed change, in commit order, once each; only those of the "
        "given sources (ids) and kinds when given. With `after` (a cursor this stream delivered), "
        "first every logged change after it, then live, with no gap and nothing twice; a cursor "
        f"this log never issued is refused with code cursor_unknown. Needs {VIEW_SOURCE}."
    )
    async def source_events(
        self,
        info: Info,
        ids: list[strawberry.ID] | None = None,
        kinds: list[SourceEventKindEnum] | None = None,
        after: Annotated[
            str | None,
            strawberry.argument(description="Resume after this cursor: the last one the client received."),
        ] = None,
    ) -> AsyncGenerator[SourceEventType, None]:
        await arequire(info, VIEW_SOURCE)
        wanted_ids = None if ids is None else {_parse_id(value, "ids") for value in ids}
        wanted_kinds = None if kinds is None else {kind.value for kind in kinds}
        resumed = None if after is None else await in_worker(selectors.cursor_position, after)
        if after is not None and resumed is None:
            raise cursor_unknown(after)

        def wanted(event: SourceEvent) -> bool:
            return (wanted_ids is None or event.source_id in wanted_ids) and (
                wanted_kinds is None or event.kind in wanted_kinds
            )

        live = LiveRun()
        replay_until = _replay_until(info)
        if replay_until is not None:  # graph.resume: the cohort it joins sends what follows
            async for event in _logged(resumed or replay_until, replay_until, wanted_ids, wanted_kinds):
                live.event(event.sequence)
                yield event
            return
        feed = change_feed()
        async with feed.listen() as listener:
            # Every change numbered above this one reaches the subscriber, in commit order.
            delivered = await feed.position_now()
            live.listening(delivered)
            if resumed is not None:
                async for event in _logged(resumed, delivered, wanted_ids, wanted_kinds):
                    live.event(event.sequence)
                    yield event
            async for change in listener:
                for event in change.events:
                    if event.sequence > delivered and wanted(event):
                        live.event(event.sequence, event.occurred_at)
                        yield event
                delivered = max(delivered, change.upto)

    @strawberry.subscription(
        description="The live list, newest first: the current list at once, then after every "
        f"change and shortly after midnight (deliveryStatus changes with the date). Needs {VIEW_SOURCE}."
    )
    async def sources(
        self,
        info: Info,
        filters: SourceFilter | None = None,
        pagination: OffsetPaginationInput | None = None,
    ) -> AsyncGenerator[list[SourceType], None]:
        await arequire(info, VIEW_SOURCE)
        page(Source.objects.none(), pagination)  # refuse a bad page before subscribing
        arguments = json.dumps(
            [
                strawberry.asdict(filters) if filters else None,
                strawberry.asdict(pagination) if pagination else None,
            ],
            default=str,
            sort_keys=True,
        )

        async def load(position: int) -> list[Source]:
            # The runs of other selections with the same arguments share the query.
            return await shared(
                ("sources", position, project_today(), arguments), lambda: in_worker(_source_list, filters, pagination)
            )

        async with contextlib.aclosing(_states(load, "sources")) as states:
            async for state in states:
                yield state

    @strawberry.subscription(
        description="One live source: now, then as each change leaves it, and shortly after "
        f"midnight; null (and the end) once deleted or when there is no such source. Needs {VIEW_SOURCE}."
    )
    async def source(
        self,
        info: Info,
        id: Annotated[strawberry.ID, strawberry.argument(description="The source's UUID.")],  # noqa: A002
    ) -> AsyncGenerator[SourceType | None, None]:
        await arequire(info, VIEW_SOURCE)
        pk = parse_source_id(id)
        if pk is None:
            yield None
            return

        live = LiveRun()
        feed = change_feed()
        async with feed.listen() as listener:
            position = await feed.position_now()
            live.listening(position)
            current = await in_worker(selectors.source_get, pk)
            live.state(position)
            yield current
            if current is None:
                return
            async for change in listener:
                position = max(position, change.upto)
                latest, changes = current, [event for event in change.events if event.source_id == pk]
                for event in changes:
                    # Never back: an event older than the version sent changes nothing.
                    if latest is None or event.version > latest.version:
                        latest = event.source  # as the change left it; None once deleted
                if len(changes) > 1:  # changes that came while the last result was computed or sent
                    COALESCED.labels("source").inc(len(changes) - 1)
                if latest is not current or change.new_day:  # a new day: a new deliveryStatus
                    current = latest
                    live.state(position, changes[-1].occurred_at if changes else None)
                    yield current
                    if current is None:
                        return
                else:
                    await live.unchanged(position)

    @strawberry.subscription(
        description=f"The data library: now, then after every change and shortly after midnight. Needs {VIEW_SOURCE}."
    )
    async def data_library(self, info: Info) -> AsyncGenerator[DataLibraryType, None]:
        await arequire(info, VIEW_SOURCE)

        async def load(position: int) -> selectors.DataLibrary:
            # One computation per change for the whole process, whatever the selections.
            return await shared(("data_library", position, project_today()), lambda: in_worker(selectors.data_library))

        async with contextlib.aclosing(_states(load, "dataLibrary")) as states:
            async for state in states:
                yield state


async def _states(load: Callable[[int], Awaitable[T]], field: str) -> AsyncGenerator[T, None]:
    """Yield a live result's whole state now, then again after every change and each midnight.

    A live result is a whole state, not a change: it is read again for every change newer
    than the last one it reflects (those that arrive together, once), and at midnight.
    """
    live = LiveRun()
    feed = change_feed()
    async with feed.listen() as listener:
        reflected = await feed.position_now()
        live.listening(reflected)
        state = await load(reflected)
        live.state(reflected)
        yield state
        async for change in listener:
            if change.upto > reflected or change.new_day:
                new = [event for event in change.events if event.sequence > reflected]
                if len(new) > 1:  # changes that came while the last result was computed or sent
                    COALESCED.labels(field).inc(len(new) - 1)
                reflected = max(reflected, change.upto)
                state = await load(reflected)
                live.state(reflected, new[-1].occurred_at if new else None)
                yield state
            else:  # a change the first result already reflects
                await live.unchanged(reflected)


async def _logged(
    after: int, upto: int, source_ids: set[uuid.UUID] | None, kinds: set[str] | None
) -> AsyncGenerator[SourceEvent, None]:
    """Yield the logged changes numbered above `after` up to `upto` that these filters select, in order."""
    while after < upto:
        events = await in_worker(
            functools.partial(selectors.events_between, source_ids=source_ids, kinds=kinds), after, upto
        )
        for event in events:
            yield event
        if len(events) < selectors.EVENTS_PER_READ:
            return
        after = events[-1].sequence


def _replay_until(info: Info) -> int | None:
    """Return the position up to which a resuming member's own run replays the log (graph.resume), if any."""
    context = info.context
    return context.get(REPLAY_UNTIL) if isinstance(context, dict) else None


def _source_list(filters: SourceFilter | None, pagination: OffsetPaginationInput | None) -> list[Source]:
    return list(page(sources_queryset(filters), pagination))


def _parse_id(value: str, argument: str) -> uuid.UUID:
    pk = parse_source_id(value)
    if pk is None:
        raise invalid(f"{argument}: {str(value)[:64]!r} is not a source id (a UUID).")
    return pk
