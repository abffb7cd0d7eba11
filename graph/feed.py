"""The process's one change feed: every committed change, in commit order, to every live result.

One feed per event loop (a process serves from one) listens to the sources' topic, orders the
changes by their number, fills gaps and lost messages from the log, checks the log every
SUBSCRIPTION_CATCH_UP_SECONDS and notices midnight, once for the whole process. Live results
(graph.subscriptions, one run per cohort: graph.cohorts) each take a Listener and read
`Change`s from it.

Why the numbers can be trusted: each change takes the next number from a locked counter in
its own transaction (catalog.models.EventSequence), so once number n has committed, every
smaller number has committed or rolled back, and the log holds every one that committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from django.conf import settings
from django.db import OperationalError
from django.utils import timezone

from catalog.errors import database_unreachable
from catalog.models import SourceEvent, last_sequence, project_today
from catalog.selectors import EVENTS_PER_READ, events_between
from catalog.topics import SOURCES_TOPIC
from graph.loops import Membership, PerLoop
from graph.metrics import CHANGES, LOG_READS
from graph.worker import in_worker

logger = logging.getLogger(__name__)

# The feed joins its topic again this often: the in-memory and core layers forget a member
# after their group expiry (a day by default); joining again is cheap and idempotent.
REJOIN_SECONDS = 3600.0
# After the channel layer fails to deliver, the feed waits this long (doubling up to the
# maximum) before listening again; the catch-up check reads what it missed from the log.
RETRY_FIRST, RETRY_MAX = 0.1, 2.0


@dataclasses.dataclass(frozen=True)
class Change:
    """What a listener has not seen yet: new changes, and whether a new day has begun."""

    events: tuple[SourceEvent, ...]  # committed changes, in commit order
    upto: int  # every change numbered up to this one has been handed out
    new_day: bool = False  # the project day has changed: date-based fields may have too

    def merged(self, later: Change) -> Change:
        return Change(self.events + later.events, max(self.upto, later.upto), self.new_day or later.new_day)


class Listener:
    """One live result's place in the feed: the changes handed out since it began listening."""

    def __init__(self) -> None:
        self._pending: Change | None = None
        self._arrived = asyncio.Event()

    def _hand(self, change: Change) -> None:
        self._pending = change if self._pending is None else self._pending.merged(change)
        self._arrived.set()

    async def next(self) -> Change:
        """Return everything handed out since the last call, merged into one Change.

        A listener that took a while over the last one gets the changes since at once,
        together: a live list reloads once for all of them (API.md allows the newest state to
        replace intermediate ones), and an event stream still gets each event, in order.
        """
        await self._arrived.wait()
        change, self._pending = self._pending, None
        self._arrived.clear()
        assert change is not None
        return change

    async def __aiter__(self) -> AsyncIterator[Change]:
        while True:
            yield await self.next()


class ChangeFeed:
    """The process's listener on the sources' topic, running while anyone listens to it."""

    def __init__(self) -> None:
        self.upto = 0  # every change numbered up to this one has been handed out
        self._listeners: set[Listener] = set()
        self._task: asyncio.Task[None] | None = None
        self._started: asyncio.Future[None] | None = None
        self._position: _CoalescedRead | None = None

    @contextlib.asynccontextmanager
    async def listen(self) -> AsyncIterator[Listener]:
        """Listen from now on: every change handed out after this returns reaches the listener."""
        if self._task is None:
            self._started = asyncio.get_running_loop().create_future()
            self._task = asyncio.create_task(self._run(self._started), name="change feed")
        await asyncio.shield(self._started)
        listener = Listener()
        self._listeners.add(listener)
        try:
            yield listener
        finally:
            self._listeners.discard(listener)
            if not self._listeners and self._task is not None:
                # Nobody listens: stop hearing the topic (an idle process costs nothing); the
                # next listener starts the feed again from the log's position then.
                self._task.cancel()
                self._task = None

    async def position_now(self) -> int:
        """Return the number of the last committed change, read after this call began.

        Callers arriving together share one read, but never one that started before they
        asked: a change committed just before must be counted.
        """
        if self._position is None:
            self._position = _CoalescedRead(lambda: in_worker(last_sequence))
        return await self._position.read()

    # --- The feed's own task

    async def _run(self, started: asyncio.Future[None]) -> None:
        membership = Membership(SOURCES_TOPIC, "feed.")
        try:
            # Joined before the log's position is read: every change committed after it is
            # announced to the feed. A layer that does not answer holds nobody up: the feed
            # follows the log alone meanwhile, and reads it again once it has joined.
            await membership.join()
            self.upto = await in_worker(last_sequence)
            started.set_result(None)
            await self._follow(membership)
        except Exception as error:
            if started.done():
                raise
            # It could not start (the database is away, say): its listeners fail, and the next
            # one to come starts it again.
            if self._task is asyncio.current_task():
                self._task = None
            started.set_exception(error)
        finally:
            await membership.leave()

    async def _follow(self, membership: Membership) -> None:
        """Hand out each message's change, a catch-up check now and then, and each midnight."""

        async def receive() -> dict[str, Any]:
            if not membership.joined or membership.channel is None:
                await asyncio.Event().wait()  # not joined (yet), or no channel layer: the log alone
            return await membership.receive()

        # The waits are kept across iterations: cancelling a pending receive could lose a message.
        message = asyncio.ensure_future(receive())
        catch_up = asyncio.ensure_future(asyncio.sleep(settings.SUBSCRIPTION_CATCH_UP_SECONDS))
        rejoin = asyncio.ensure_future(asyncio.sleep(membership.rejoin_after()))
        day = project_today()
        midnight = asyncio.ensure_future(next_day(day))
        joined = time.monotonic()
        retry = RETRY_FIRST
        try:
            while True:
                waits = {message, catch_up, midnight} | ({rejoin} if not membership.joined else set())
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                if midnight.done():
                    day = project_today()
                    midnight = asyncio.ensure_future(next_day(day))
                    self._hand_out(Change((), self.upto, new_day=True))
                if not membership.joined and rejoin.done():
                    if await membership.join():
                        message.cancel()  # it waited for nothing: no channel was joined
                        message = asyncio.ensure_future(receive())
                        joined = time.monotonic()
                        await self._guarded(self._catch_up())  # what committed before it joined
                    else:
                        rejoin = asyncio.ensure_future(asyncio.sleep(membership.rejoin_after()))
                if message.done():
                    try:
                        received = message.result()
                    except Exception as error:  # the channel layer failed; the log has what it missed
                        logger.warning(
                            "The change feed could not receive (%s); listening again in %.1f s", error, retry
                        )
                        message = asyncio.ensure_future(_after(retry, receive))
                        retry = min(retry * 2, RETRY_MAX)
                    else:
                        retry = RETRY_FIRST
                        message = asyncio.ensure_future(receive())
                        await self._guarded(self._heard(received))
                if catch_up.done():
                    catch_up = asyncio.ensure_future(asyncio.sleep(settings.SUBSCRIPTION_CATCH_UP_SECONDS))
                    await self._guarded(self._catch_up())
                    if membership.channel is not None and time.monotonic() - joined > REJOIN_SECONDS:
                        await self._guarded(membership.layer.group_add(SOURCES_TOPIC, membership.channel))
                        joined = time.monotonic()
        finally:
            for wait in (message, catch_up, midnight, rejoin):
                wait.cancel()

    async def _guarded(self, work: Awaitable[Any]) -> None:
        """Await `work`; a failure is logged and left to the next catch-up check, never fatal."""
        try:
            await work
        except OperationalError as error:
            if not database_unreachable(error):
                logger.exception("The change feed failed to read the log")
            else:
                logger.warning("Catch-up check skipped: the database is unreachable")
        except Exception:
            logger.exception("The change feed failed; the next catch-up check reads what it missed")

    async def _heard(self, message: dict[str, Any]) -> None:
        sequence = message.get("sequence")
        if not isinstance(sequence, int) or sequence <= self.upto:
            return  # handed out already: through the log, or an earlier message
        if sequence == self.upto + 1:
            # The usual case, the very next change: one read by its id.
            event = await in_worker(_event, message.get("event_id"))
            if event is not None and event.sequence == sequence:
                self._hand_out(Change((event,), sequence))
                return
        # Changes between the last handed out and this one have not arrived (yet): the channel
        # layer lost them, or another process published them later. Every number up to this
        # one has committed or rolled back: read them from the log, in order. A message's
        # number is trusted only as far as the log bears it out.
        await self._read_log(sequence, settled=False)

    async def _catch_up(self) -> None:
        last = await in_worker(last_sequence)
        if last < self.upto:
            # The log was emptied (a database flushed or restored): count from where it is now.
            logger.warning("The change log went back from %d to %d; following it from there", self.upto, last)
            self.upto = last
        await self._read_log(last, settled=True)

    async def _read_log(self, upto: int, *, settled: bool) -> None:
        """Hand out the logged changes after self.upto, up to `upto`.

        `settled`: `upto` was read from the counter itself, so every number up to it has
        committed or rolled back, and the feed's position may move to it.
        """
        while self.upto < upto:
            events = await in_worker(events_between, self.upto, upto)
            full = len(events) == EVENTS_PER_READ
            if full:
                position = events[-1].sequence
            elif settled:
                position = upto
            else:
                position = events[-1].sequence if events else self.upto
            if position > self.upto:
                LOG_READS.inc(len(events))
                self._hand_out(Change(tuple(events), position))
            if not full and position < upto:
                return

    def _hand_out(self, change: Change) -> None:
        self.upto = change.upto
        CHANGES.inc(len(change.events))
        for listener in self._listeners:
            listener._hand(change)


class _CoalescedRead:
    """One read at a time, shared by every caller that asked before it started.

    Written by hand: a cache (functools, Django's) would hand a caller a value read before it
    asked; here a caller waits for the next read to start, so that it sees every commit that
    happened before it asked.
    """

    def __init__(self, read: Callable[[], Awaitable[int]]) -> None:
        self._read = read
        self._running: asyncio.Future[int] | None = None
        self._next: asyncio.Future[int] | None = None

    async def read(self) -> int:
        if self._next is None:
            self._next = asyncio.ensure_future(self._after_running())
        return await asyncio.shield(self._next)

    async def _after_running(self) -> int:
        if self._running is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._running)
        self._running, self._next = self._next, None  # from here on, new callers wait for the next read
        return await self._read()


async def _after(seconds: float, receive: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    await asyncio.sleep(seconds)  # backing off after a failure, not waiting for a condition
    return await receive()


def _event(event_id: object) -> SourceEvent | None:
    return SourceEvent.objects.filter(pk=event_id).first() if isinstance(event_id, int) else None


def seconds_until_day_after(day: dt.date, now: dt.datetime | None = None) -> float:
    """Return the seconds from `now` to just after `day` ends in the project time zone (<= 0 once it has)."""
    zone = timezone.get_default_timezone()
    midnight = dt.datetime.combine(day + dt.timedelta(days=1), dt.time.min, tzinfo=zone)
    # Compared in UTC: subtracting two times of one zone ignores a DST change between them.
    return (midnight.astimezone(dt.UTC) - (now or timezone.now()).astimezone(dt.UTC)).total_seconds() + 1


async def next_day(after: dt.date) -> None:
    """Return shortly after `after` has ended in the project time zone (at once if it has)."""
    await asyncio.sleep(max(0.0, seconds_until_day_after(after)))


# The running event loop's change feed (a process serves from one loop).
change_feed = PerLoop(ChangeFeed)
