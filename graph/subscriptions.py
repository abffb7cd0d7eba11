"""Subscriptions, carried over Channels: each joins its topic, sends now, then follows changes."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Hashable
from typing import Annotated, Any

import strawberry
from asgiref.sync import sync_to_async
from django.utils import timezone
from strawberry.types import Info
from strawberry_django.pagination import OffsetPaginationInput

from catalog import selectors
from catalog.models import Source, SourceEvent, parse_source_id, project_today
from catalog.topics import SOURCE_CHANGED, SOURCES_TOPIC, WATCHED_SOURCE_CHANGED, source_topic
from graph.errors import invalid
from graph.fanout import shared
from graph.listing import page, sources_queryset
from graph.permissions import VIEW_SOURCE, arequire
from graph.types import DataLibraryType, SourceEventKindEnum, SourceEventType, SourceFilter, SourceType

Message = dict[str, Any]


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description="Every committed change, in commit order, once each; only those of the "
        f"given sources (ids) and kinds when given. Needs {VIEW_SOURCE}."
    )
    async def source_events(
        self,
        info: Info,
        ids: list[strawberry.ID] | None = None,
        kinds: list[SourceEventKindEnum] | None = None,
    ) -> AsyncGenerator[SourceEventType, None]:
        await arequire(info, VIEW_SOURCE)
        wanted_ids = None if ids is None else {str(_parse_id(value, "ids")) for value in ids}
        wanted_kinds = None if kinds is None else {kind.value for kind in kinds}
        async with _listen(info, SOURCES_TOPIC) as messages:
            async for message in messages:
                # Filtered on the message itself, so unwanted events cost no query.
                if wanted_ids is not None and message["source_id"] not in wanted_ids:
                    continue
                if wanted_kinds is not None and message["kind"] not in wanted_kinds:
                    continue
                event = await _event(message["event_id"])
                if event is not None:  # None: the log entry was deleted since (a demo reset)
                    yield event

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

        async def load() -> list[Source]:
            return await sync_to_async(_source_list)(filters, pagination)

        async with _listen(info, SOURCES_TOPIC) as messages:
            day = project_today()  # the day the first result is computed on
            yield await load()
            async for tick in _with_day_changes(messages, day):
                # Subscribers with the same arguments share one query per event.
                yield await shared(("sources", _tick_key(tick), arguments), load)

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
        async with _listen(info, source_topic(pk), WATCHED_SOURCE_CHANGED) as messages:
            day = project_today()
            current = await sync_to_async(selectors.source_get)(pk)
            yield current
            if current is None:
                return
            async for tick in _with_day_changes(messages, day):
                if tick is not None:
                    # A socket that follows several sources gets all their messages in each
                    # subscription: the consumer sorts messages by type, not by group.
                    if tick["source_id"] != str(pk) or tick["version"] <= current.version:
                        continue  # another source's, or committed before the first result was read
                    event = await _event(tick["event_id"])
                    if event is None:
                        continue
                    if event.source is None:
                        yield None
                        return
                    current = event.source
                yield current

    @strawberry.subscription(
        description=f"The data library: now, then after every change and shortly after midnight. Needs {VIEW_SOURCE}."
    )
    async def data_library(self, info: Info) -> AsyncGenerator[DataLibraryType, None]:
        await arequire(info, VIEW_SOURCE)

        async def load() -> selectors.DataLibrary:
            return await sync_to_async(selectors.data_library)()

        async with _listen(info, SOURCES_TOPIC) as messages:
            day = project_today()
            yield await load()
            async for tick in _with_day_changes(messages, day):
                yield await shared(("data_library", _tick_key(tick)), load)


def _source_list(filters: SourceFilter | None, pagination: OffsetPaginationInput | None) -> list[Source]:
    return list(page(sources_queryset(filters), pagination))


def _listen(
    info: Info, topic: str, message_type: str = SOURCE_CHANGED
) -> contextlib.AbstractAsyncContextManager[AsyncIterator[Message]]:
    """Join `topic`; the returned iterator yields its messages (of `message_type`) from then on."""
    try:
        consumer = info.context["ws"]
    except (KeyError, AttributeError):
        raise invalid("Subscriptions are served over WebSocket at /graphql.") from None
    return consumer.listen_to_channel(message_type, groups=[topic])


async def _event(event_id: int) -> SourceEvent | None:
    """Load a change once in this process, for all its subscribers (None if the log lost it)."""

    async def load() -> SourceEvent | None:
        return await sync_to_async(SourceEvent.objects.filter(pk=event_id).first)()

    return await shared(("event", event_id), load)


def _parse_id(value: str, argument: str) -> uuid.UUID:
    pk = parse_source_id(value)
    if pk is None:
        raise invalid(f"{argument}: {str(value)[:64]!r} is not a source id (a UUID).")
    return pk


def _tick_key(tick: Message | None) -> Hashable:
    return ("event", tick["event_id"]) if tick is not None else ("day", project_today())


def seconds_until_day_after(day: dt.date, now: dt.datetime | None = None) -> float:
    """Return the seconds from `now` to just after `day` ends in the project time zone (<= 0 once it has)."""
    zone = timezone.get_default_timezone()
    midnight = dt.datetime.combine(day + dt.timedelta(days=1), dt.time.min, tzinfo=zone)
    # Compared in UTC: subtracting two times of one zone ignores a DST change between them.
    return (midnight.astimezone(dt.UTC) - (now or timezone.now()).astimezone(dt.UTC)).total_seconds() + 1


async def next_day(after: dt.date) -> None:
    """Return shortly after `after` has ended in the project time zone (at once if it has)."""
    await asyncio.sleep(max(0.0, seconds_until_day_after(after)))


async def _with_day_changes(messages: AsyncIterator[Message], day: dt.date) -> AsyncGenerator[Message | None, None]:
    """Yield each message, and None once `day` (that of the last result sent) has ended."""
    # Both waits are kept across iterations: cancelling a pending read would end `messages`.
    message = asyncio.ensure_future(anext(messages))
    midnight = asyncio.ensure_future(next_day(day))
    try:
        while True:
            await asyncio.wait({message, midnight}, return_when=asyncio.FIRST_COMPLETED)
            if midnight.done():
                day = project_today()
                midnight = asyncio.ensure_future(next_day(day))
                yield None
            if message.done():
                try:
                    received = message.result()
                except StopAsyncIteration:
                    return
                message = asyncio.ensure_future(anext(messages))
                yield received
    finally:
        message.cancel()
        midnight.cancel()
