"""Cohorts: the subscribers of one operation share one execution and one encoded result per change.

Subscriptions whose results are necessarily equal (same document, operation name and
variables; no subscription field depends on who asks, once the permission to subscribe has
been checked for each socket) form a cohort. The cohort runs the operation once, through
Strawberry, and encodes each result once; a member's frame differs only by its operation id,
and goes straight to its socket. This is Hasura's multiplexing and Apollo Router's
subscription deduplication.

A member that joins late gets the cohort's current result when that result is at least as new
as the log was when the member joined, else the next one that is; an event stream sends it
the events committed after it joined. A member that leaves costs the others nothing; the last
one to leave ends the run.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import dataclasses
import datetime as dt
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from strawberry.types.execution import ExecutionResult, PreExecutionError

from graph.feed import change_feed
from graph.loops import PerLoop
from graph.metrics import DELIVERY_DELAY, RESULTS

logger = logging.getLogger(__name__)

# A broadcast lets the event loop serve others (a mutation's request, say) this often.
SENDS_BETWEEN_YIELDS = 64

OperationKey = tuple[str, str | None, str]  # document, operation name, variables as canonical JSON


def operation_key(query: str, operation_name: str | None, variables: dict[str, Any] | None) -> OperationKey:
    return (query, operation_name, json.dumps(variables or {}, sort_keys=True, separators=(",", ":")))


@dataclasses.dataclass(eq=False)
class Member:
    """One subscriber: its socket's frame before and after the payload, and how to send it."""

    head: str  # '{"id":"<operation id>","type":"next","payload":'
    send: Callable[[str], Awaitable[None]]
    field: str = ""  # the subscription's root field, for the metrics
    floor: int | None = None  # the log's position when it joined; None until known
    started: bool = False  # a state stream has sent it a first result
    stopped: bool = False  # its operation was completed or stopped: not one more frame
    backlog: collections.deque[Outcome] = dataclasses.field(default_factory=collections.deque)  # until the floor is set
    finished: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    results: Any = dataclasses.field(init=False)  # the metric it adds its results to

    def __post_init__(self) -> None:
        self.results = RESULTS.labels(self.field)


@dataclasses.dataclass(frozen=True)
class Outcome:
    """One result of a cohort's run, encoded once."""

    payload: str  # the JSON of the protocol message's payload
    position: int | None  # the log position it reflects (state) or the event's number
    kind: str  # "state", "event", or "final" (an error result, for everyone)
    changed_at: float | None = None  # when the newest change it reflects was logged (epoch seconds)


class Cohort:
    """One run of one operation, and the members it is sent to."""

    def __init__(self, key: OperationKey, registry: dict[OperationKey, Cohort]) -> None:
        self.key = key
        self.members: set[Member] = set()
        self.start: int | None = None  # the run listens to the feed from this position
        self.latest: Outcome | None = None  # the latest state result
        self.position: int | None = None  # the log position the latest state result reflects
        self.failure: PreExecutionError | None = None
        self.ended = False
        self._ready = asyncio.Event()  # the run listens, has a result, or has ended
        self._registry = registry
        self._task: asyncio.Task[None] | None = None
        self._stamp: tuple[str, int, float | None] | None = None

    # --- What the run's resolver tells the cohort (through LiveRun)

    def listening(self, position: int) -> None:
        self.start = position
        self._ready.set()

    def stamp(self, kind: str, position: int, changed_at: float | None) -> None:
        self._stamp = (kind, position, changed_at)

    async def unchanged(self, position: int) -> None:
        """The run has seen the changes up to `position`, and its latest result still stands."""
        self.position = position
        if self.latest is None:
            return
        for member in list(self.members):
            # Those still waiting for a result as new as the log was when they joined.
            if member.floor is not None and not member.started and position >= member.floor:
                await deliver(member, self.latest)

    # --- The run

    def begin(self, stream: Callable[[], Awaitable[Any]]) -> None:
        self._task = asyncio.create_task(self._run(stream), name=f"cohort {self.key[0][:40]!r}")

    async def _run(self, stream: Callable[[], Awaitable[Any]]) -> None:
        token = _cohort.set(self)
        try:
            results = await stream()
            async with contextlib.aclosing(results):
                async for result in results:
                    if isinstance(result, PreExecutionError):
                        self.failure = result
                        return
                    await self._publish(result)
        except Exception:
            logger.exception("A live result's run failed; its subscribers are completed")
        finally:
            _cohort.reset(token)
            self._end()

    def _end(self) -> None:
        self.ended = True
        self._ready.set()
        if self._registry.get(self.key) is self:
            del self._registry[self.key]
        for member in self.members:
            member.finished.set()

    async def _publish(self, result: ExecutionResult) -> None:
        stamp, self._stamp = self._stamp, None
        kind, position, changed_at = stamp if stamp is not None else ("final", None, None)
        outcome = Outcome(encode(result), position, kind, changed_at)
        if kind == "state":
            self.latest, self.position = outcome, position
        self._ready.set()
        await self._broadcast(outcome)

    async def _broadcast(self, outcome: Outcome) -> None:
        sent, counter = 0, None
        for member in list(self.members):
            if member.floor is None:
                member.backlog.append(outcome)  # admit() sends it, in order
            elif _due(member, outcome, member.floor) and await deliver(member, outcome, counted=False):
                sent, counter = sent + 1, member.results
                if sent % SENDS_BETWEEN_YIELDS == 0:
                    await asyncio.sleep(0)  # a writer's request waits for no more than this many sends
        if counter is not None:  # one metric update per broadcast: every member has the same field
            counter.inc(sent)
            if outcome.changed_at is not None:
                DELIVERY_DELAY.observe(max(0.0, time.time() - outcome.changed_at))

    # --- Members

    async def admit(self, member: Member, floor: Callable[[], Awaitable[int]], *, hold: bool = False) -> int | None:
        """Add `member`, then send it what it is due (see the module's docstring).

        Returns the log position it joined at (None when the run had ended). `hold`: send it
        nothing yet, and keep what the run publishes for it until release() (graph.resume
        first sends it what it missed before that position).
        """
        self.members.add(member)
        await self._ready.wait()
        if self.ended and not member.backlog:
            member.finished.set()
            return None
        position = max(await floor(), self.start or 0)
        if not hold:
            await self.release(member, position)
        return position

    async def release(self, member: Member, position: int) -> None:
        """Send `member` what it is due since `position`, and from then on what the run publishes."""
        # Until its floor is set, what the run publishes waits in the member's backlog: sent
        # here in order, with no await between the last look at the backlog and setting it.
        while not member.stopped:  # a stopped member is sent nothing (and deliver never waits then)
            if member.backlog:
                outcome = member.backlog.popleft()
                if _due(member, outcome, position):
                    await deliver(member, outcome)
            elif not member.started and self.latest is not None and (self.position or 0) >= position:
                await deliver(member, self.latest)
            else:
                break
        member.floor = position
        if self.ended:
            member.finished.set()

    def leave(self, member: Member) -> None:
        self.members.discard(member)
        if not self.members and not self.ended:
            # Nobody left to send to: end the run (and free its listener) at once.
            if self._registry.get(self.key) is self:
                del self._registry[self.key]
            if self._task is not None:
                self._task.cancel()


def encode(result: ExecutionResult) -> str:
    """Return a result as the JSON of a protocol message's payload."""
    payload: dict[str, Any] = {"data": result.data}
    if result.errors:
        payload["errors"] = [error.formatted for error in result.errors]
    if result.extensions:
        payload["extensions"] = result.extensions
    return json.dumps(payload, separators=(",", ":"))


def _due(member: Member, outcome: Outcome, floor: int) -> bool:
    if outcome.kind == "event":
        return outcome.position > floor  # committed after the member joined
    if outcome.kind == "state":
        # Its first result must be as new as the log was when it joined; later ones are newer.
        return member.started or outcome.position >= floor
    return True  # an error result that ends the run: for everyone


async def deliver(member: Member, outcome: Outcome, *, counted: bool = True) -> bool:
    """Send `member` one result, unless its operation has stopped; return whether it was sent.

    `counted`: add it to the results metric (a broadcast counts its sends once, at its end).
    """
    if member.stopped:
        return False
    if outcome.kind == "state":
        member.started = True
    try:
        await member.send(member.head + outcome.payload + "}")
    except Exception:  # the socket is going away: its operation ends with it
        logger.debug("A frame could not be sent", exc_info=True)
        return False
    if counted:
        member.results.inc()
    return True


# The cohort whose run is executing (its resolvers read it through LiveRun).
_cohort: contextvars.ContextVar[Cohort | None] = contextvars.ContextVar("cohort", default=None)

# The cohorts of the running event loop, by operation.
_registry: PerLoop[dict[OperationKey, Cohort]] = PerLoop(dict)


async def serve(
    key: OperationKey,
    member: Member,
    stream: Callable[[], Awaitable[Any]],
    replay: Callable[[int], Awaitable[PreExecutionError | bool]] | None = None,
) -> PreExecutionError | None:
    """Serve `member` from the cohort of `key` until the run ends; `stream()` starts a run.

    Returns the run's PreExecutionError, if it failed before executing (a document the schema
    refuses): each protocol reports that its own way. `replay(position)`, when given, first
    sends the member what it missed up to the position it joins at (graph.resume.replay):
    its PreExecutionError is returned, and False (it ended with an error result) ends the
    member's operation.
    """
    registry = _registry()
    cohort = registry.get(key)
    if cohort is None:
        cohort = registry[key] = Cohort(key, registry)
        cohort.begin(stream)
    try:
        position = await cohort.admit(member, change_feed().position_now, hold=replay is not None)
        if replay is not None and position is not None:
            replayed = await replay(position)
            if replayed is not True:
                return replayed if isinstance(replayed, PreExecutionError) else None
            await cohort.release(member, position)
        await member.finished.wait()
    finally:
        cohort.leave(member)
    return cohort.failure


class LiveRun:
    """What a subscription resolver tells the cohort that runs it about the results it yields.

    Outside a cohort (an operation served on its own) these do nothing.
    """

    def __init__(self) -> None:
        self.cohort = _cohort.get()

    def listening(self, position: int) -> None:
        """The resolver hears every change numbered above `position` from now on."""
        if self.cohort is not None:
            self.cohort.listening(position)

    def state(self, position: int, changed_at: dt.datetime | None = None) -> None:
        """The next result is the whole state as of the log's `position` (its newest change logged at `changed_at`)."""
        if self.cohort is not None:
            self.cohort.stamp("state", position, changed_at.timestamp() if changed_at else None)

    def event(self, sequence: int, changed_at: dt.datetime | None = None) -> None:
        """The next result is the change numbered `sequence`, logged at `changed_at`."""
        if self.cohort is not None:
            self.cohort.stamp("event", sequence, changed_at.timestamp() if changed_at else None)

    async def unchanged(self, position: int) -> None:
        """The changes up to `position` left the last result as it was."""
        if self.cohort is not None:
            await self.cohort.unchanged(position)


def live_members() -> int:
    """Return how many members of this process's cohorts hear every change committed from now on."""
    return sum(
        1
        for cohort in _registry().values()
        if cohort.start is not None
        for member in cohort.members
        if member.floor is not None
    )
