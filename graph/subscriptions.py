"""Subscriptions, carried over Channels: each joins its topic, sends now, then follows changes."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import enum
import functools
import json
import logging
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Hashable
from typing import Annotated, Any, TypeVar

import strawberry
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import OperationalError, close_old_connections
from django.utils import timezone
from strawberry.types import Info
from strawberry_django.pagination import OffsetPaginationInput

from catalog import selectors
from catalog.errors import database_unreachable
from catalog.models import Source, SourceEvent, last_sequence, parse_source_id, project_today
from catalog.topics import SOURCE_CHANGED, SOURCES_TOPIC, WATCHED_SOURCE_CHANGED, source_topic
from graph.errors import invalid
from graph.fanout import shared
from graph.listing import page, sources_queryset
from graph.permissions import VIEW_SOURCE, arequire
from graph.types import DataLibraryType, SourceEventKindEnum, SourceEventType, SourceFilter, SourceType

Message = dict[str, Any]
T = TypeVar("T")
logger = logging.getLogger(__name__)


class Check(enum.Enum):
    """What a subscription hears besides its topic's messages."""

    NEW_DAY = "new day"  # the day of the last result has ended: date-based fields changed
    CATCH_UP = "catch up"  # time to ask the log whether the channel layer lost a message


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

        def wanted(source_id: str, kind: str) -> bool:
            return (wanted_ids is None or source_id in wanted_ids) and (wanted_kinds is None or kind in wanted_kinds)

        # Every change numbered above this one reaches the subscriber: those whose message
        # comes before the join below are read from the log once a later number shows the gap.
        delivered = await _read(last_sequence)()
        async with _follow(info, SOURCES_TOPIC) as ticks:
            async for tick in ticks:
                upto = await _last_sequence_now() if tick is Check.CATCH_UP else tick["sequence"]
                if upto <= delivered:
                    continue  # delivered already, through the log or an earlier message
                if upto == delivered + 1 and tick is not Check.CATCH_UP:
                    # The usual case, the very next change: filtered on the message itself,
                    # so unwanted events cost no query.
                    if not wanted(tick["source_id"], tick["kind"]):
                        delivered = upto
                        continue
                    event = await _event(tick["event_id"])
                    if event is not None and event.sequence == upto:
                        delivered = upto
                        yield event
                        continue
                    # Not in the log as announced (deleted since by a demo reset): ask the log.
                # Changes between the last delivered and this one have not arrived (yet): the
                # channel layer lost them, or another process published them later. Every
                # number up to `upto` has committed or rolled back (see EventSequence), so the
                # log holds them all: deliver them from there, in order.
                while delivered < upto:
                    events = await _events_after(delivered, upto)
                    for event in events:
                        if wanted(str(event.source_id), event.kind):
                            yield event
                    if len(events) == EVENTS_PER_READ:
                        delivered = events[-1].sequence
                    elif tick is Check.CATCH_UP:
                        delivered = upto  # read from the log itself: every number up to it is settled
                    else:
                        # A message's number is trusted only as far as the log bears it out.
                        delivered = events[-1].sequence if events else delivered
                        break

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
            return await _read(_source_list)(filters, pagination)

        async with contextlib.aclosing(_reloads(info)) as reloads:
            async for key in reloads:
                # Subscribers with the same arguments share one query per change.
                yield await (load() if key is None else shared(("sources", key, arguments), load))

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

        async def load() -> Source | None:
            return await _read(selectors.source_get)(pk)

        async with _follow(info, source_topic(pk), WATCHED_SOURCE_CHANGED, day=project_today()) as ticks:
            checked = await _read(last_sequence)()
            current = await load()
            yield current
            if current is None:
                return
            async for tick in ticks:
                if tick is Check.NEW_DAY:
                    yield current  # as it stands, with the new day's deliveryStatus
                    continue
                if tick is Check.CATCH_UP:
                    upto = await _last_sequence_now()
                    if upto <= checked:
                        continue
                    checked = upto
                    latest = await shared(("source", pk, upto), load)
                else:
                    # A socket that follows several sources gets all their messages in each
                    # subscription: the consumer sorts messages by type, not by group.
                    if tick["source_id"] != str(pk):
                        continue
                    event = await _event(tick["event_id"])
                    if event is None:
                        continue
                    latest = event.source
                if latest is None:
                    yield None
                    return
                if latest.version > current.version:  # never back: a late message is older
                    current = latest
                    yield current

    @strawberry.subscription(
        description=f"The data library: now, then after every change and shortly after midnight. Needs {VIEW_SOURCE}."
    )
    async def data_library(self, info: Info) -> AsyncGenerator[DataLibraryType, None]:
        await arequire(info, VIEW_SOURCE)

        async def load() -> selectors.DataLibrary:
            return await _read(selectors.data_library)()

        async with contextlib.aclosing(_reloads(info)) as reloads:
            async for key in reloads:
                yield await (load() if key is None else shared(("data_library", key), load))


# A gap is read from the log this many changes at a time.
EVENTS_PER_READ = 500


async def _reloads(info: Info) -> AsyncGenerator[Hashable | None, None]:
    """Join the sources topic; yield None for the first result, then a key for each reload.

    A live result is a whole state, not a change: it is read again for every change newer
    than the last one it reflects, and at midnight. The key names what the reload reflects,
    so that the subscribers of one process that reload for the same reason share one query.
    """
    async with _follow(info, SOURCES_TOPIC, day=project_today()) as ticks:
        reflected = await _read(last_sequence)()
        yield None
        async for tick in ticks:
            if tick is Check.NEW_DAY:
                yield ("day", project_today())
                continue
            upto = await _last_sequence_now() if tick is Check.CATCH_UP else tick["sequence"]
            if upto > reflected:  # else: a late message, or a check that found nothing new
                reflected = upto
                yield ("sequence", upto)


def _read(function: Callable[..., T]) -> Callable[..., Awaitable[T]]:
    """Return `function` to await in the database thread, as sync_to_async does, with _retrying."""
    return sync_to_async(functools.partial(_retrying, function))


def _retrying(function: Callable[..., T], *args: Any) -> T:
    """Call `function`; once more on a new connection if the thread's connection broke.

    A request starts by dropping a connection that broke; a subscription's reads come from
    channel-layer messages and timers, which do not. So a read that finds its connection
    broken (the database was away) drops it and tries once more on a new one.
    """
    try:
        return function(*args)
    except OperationalError as error:
        if not database_unreachable(error):
            raise
        close_old_connections()
        return function(*args)


def _source_list(filters: SourceFilter | None, pagination: OffsetPaginationInput | None) -> list[Source]:
    return list(page(sources_queryset(filters), pagination))


@contextlib.asynccontextmanager
async def _follow(
    info: Info, topic: str, message_type: str = SOURCE_CHANGED, day: dt.date | None = None
) -> AsyncGenerator[AsyncIterator[Message | Check], None]:
    """Join `topic` and yield its ticks (see _ticks); `day`: that of the first result, if dated."""
    async with _listen(info, topic, message_type) as messages, contextlib.aclosing(_ticks(messages, day)) as ticks:
        yield ticks


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
        return await _read(SourceEvent.objects.filter(pk=event_id).first)()

    return await shared(("event", event_id), load)


def _parse_id(value: str, argument: str) -> uuid.UUID:
    pk = parse_source_id(value)
    if pk is None:
        raise invalid(f"{argument}: {str(value)[:64]!r} is not a source id (a UUID).")
    return pk


async def _events_after(after: int, upto: int) -> list[SourceEvent]:
    """Load the logged changes numbered above `after`, up to `upto`, in order (at most EVENTS_PER_READ)."""

    def load() -> list[SourceEvent]:
        changes = SourceEvent.objects.filter(sequence__gt=after, sequence__lte=upto).order_by("sequence")
        return list(changes[:EVENTS_PER_READ])

    return await shared(("events", after, upto), _read(load))


async def _last_sequence_now() -> int:
    """Return the number of the last committed change; one query per process per check period.

    0 while the database cannot be reached: a check finds nothing new then, and the
    subscription waits the outage out (no change can commit during it) for the next one.
    """

    def check() -> int:
        try:
            return _retrying(last_sequence)
        except OperationalError as error:
            if not database_unreachable(error):
                raise
            logger.warning("Catch-up check skipped: the database is unreachable")
            return 0

    period = settings.SUBSCRIPTION_CATCH_UP_SECONDS
    return await shared(("last_sequence", time.monotonic() // period), sync_to_async(check))


def seconds_until_day_after(day: dt.date, now: dt.datetime | None = None) -> float:
    """Return the seconds from `now` to just after `day` ends in the project time zone (<= 0 once it has)."""
    zone = timezone.get_default_timezone()
    midnight = dt.datetime.combine(day + dt.timedelta(days=1), dt.time.min, tzinfo=zone)
    # Compared in UTC: subtracting two times of one zone ignores a DST change between them.
    return (midnight.astimezone(dt.UTC) - (now or timezone.now()).astimezone(dt.UTC)).total_seconds() + 1


async def next_day(after: dt.date) -> None:
    """Return shortly after `after` has ended in the project time zone (at once if it has)."""
    await asyncio.sleep(max(0.0, seconds_until_day_after(after)))


async def _ticks(messages: AsyncIterator[Message], day: dt.date | None = None) -> AsyncGenerator[Message | Check, None]:
    """Yield each message; Check.CATCH_UP every SUBSCRIPTION_CATCH_UP_SECONDS; and, given the
    `day` of the first result, Check.NEW_DAY once that day (then each next one) has ended."""
    # The waits are kept across iterations: cancelling a pending read would end `messages`.
    message = asyncio.ensure_future(anext(messages))
    midnight = asyncio.ensure_future(next_day(day)) if day is not None else None
    catch_up = asyncio.ensure_future(asyncio.sleep(settings.SUBSCRIPTION_CATCH_UP_SECONDS))
    try:
        while True:
            waits = {message, catch_up} if midnight is None else {message, catch_up, midnight}
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            if midnight is not None and midnight.done():
                midnight = asyncio.ensure_future(next_day(project_today()))
                yield Check.NEW_DAY
            if message.done():
                try:
                    received = message.result()
                except StopAsyncIteration:
                    return
                message = asyncio.ensure_future(anext(messages))
                yield received
            if catch_up.done():
                catch_up = asyncio.ensure_future(asyncio.sleep(settings.SUBSCRIPTION_CATCH_UP_SECONDS))
                yield Check.CATCH_UP
    finally:
        message.cancel()
        catch_up.cancel()
        if midnight is not None:
            midnight.cancel()
