"""The process's one watch on access changes: each concerned socket checks its credentials again.

A socket signed in with an API token or a session must close the moment its credentials stop
being good: a token revoked, shortened or deleted, a user deactivated, demoted or signed out.
The changes are announced on one topic (catalog.topics.ACCESS_TOPIC) with the users and tokens
concerned; one watch per process (per event loop) hears them and asks only the sockets of those
users and tokens to check again. A socket costs the channel layer nothing: no channel, no group
of its own, which makes opening thousands of them cheap. A backstop re-checks every socket of
the process once per ACCESS_RECHECK_SECONDS, spread evenly over the period, for changes that
announce nothing (a queryset update, a lost message).
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from django.conf import settings

from catalog.topics import ACCESS_TOPIC
from graph.loops import Membership, PerLoop

logger = logging.getLogger(__name__)


class Watched(Protocol):
    async def check_access(self, ended_session: str | None = None) -> None: ...


class AccessWatch:
    """The sockets of this process, by user and by token, and the task that hears about them."""

    def __init__(self) -> None:
        self._by_user: defaultdict[Any, set[Watched]] = defaultdict(set)
        self._by_token: defaultdict[Any, set[Watched]] = defaultdict(set)
        self._sockets: dict[Watched, tuple[Any, Any]] = {}
        self._task: asyncio.Task[None] | None = None
        self._started: asyncio.Future[None] | None = None
        self._checks: set[asyncio.Task[None]] = set()

    async def add(self, socket: Watched, user_id: Any, token_id: Any = None) -> None:
        """Watch `socket` from now on: a change announced after this returns reaches it.

        Unless the channel layer did not answer: then it is checked once the watch has joined.
        """
        self._sockets[socket] = (user_id, token_id)
        self._by_user[user_id].add(socket)
        if token_id is not None:
            self._by_token[token_id].add(socket)
        if self._task is None:
            self._started = asyncio.get_running_loop().create_future()
            self._task = asyncio.create_task(self._run(self._started), name="access watch")
        await asyncio.shield(self._started)

    def discard(self, socket: Watched) -> None:
        user_id, token_id = self._sockets.pop(socket, (None, None))
        for index, key in ((self._by_user, user_id), (self._by_token, token_id)):
            sockets = index.get(key)
            if sockets is not None:
                sockets.discard(socket)
                if not sockets:
                    del index[key]
        if not self._sockets and self._task is not None:
            self._task.cancel()  # nobody to watch: the next socket starts it again
            self._task = None

    def watched(self) -> int:
        return len(self._sockets)

    async def _run(self, started: asyncio.Future[None]) -> None:
        membership = Membership(ACCESS_TOPIC, "access.")
        try:
            # A layer that does not answer holds no sign-in up: the watch joins later, and then
            # checks every socket once, for what was announced while it could not hear.
            late = not await membership.join()
            started.set_result(None)
            await self._follow(membership, late)
        except Exception as error:
            if started.done():
                raise
            if self._task is asyncio.current_task():
                self._task = None
            started.set_exception(error)
        finally:
            await membership.leave()

    async def _follow(self, membership: Membership, late: bool) -> None:
        backstop = asyncio.create_task(self._recheck_all())
        try:
            while not membership.joined:
                await asyncio.sleep(membership.rejoin_after())  # backing off after a failure
                await membership.join()
            if late:
                for socket in list(self._sockets):
                    self._check(socket.check_access)
            while membership.channel is not None:
                try:
                    message = await membership.receive()
                except Exception as error:  # the backstop covers what is missed meanwhile
                    logger.warning("The access watch could not receive (%s); listening again in 1 s", error)
                    await asyncio.sleep(1)  # backing off after a failure, not waiting for a condition
                    continue
                self._heard(message)
            await asyncio.Event().wait()  # no channel layer: the backstop alone
        finally:
            backstop.cancel()

    def _heard(self, message: dict[str, Any]) -> None:
        concerned: set[Watched] = set()
        for user_id in message.get("user_ids") or ():
            concerned |= self._by_user.get(user_id, set())
        for token_id in message.get("token_ids") or ():
            concerned |= self._by_token.get(token_id, set())
        ended_session = message.get("ended_session")
        for socket in concerned:
            self._check(lambda socket=socket: socket.check_access(ended_session))

    def _check(self, check: Callable[[], Awaitable[None]]) -> None:
        task = asyncio.create_task(check())
        self._checks.add(task)  # held until done: the loop keeps only weak references to tasks
        task.add_done_callback(self._checks.discard)

    async def _recheck_all(self) -> None:
        # Each socket once per period, one at a time, evenly spaced: never a burst of checks.
        while True:
            sockets = list(self._sockets) or [None]
            for socket in sockets:
                # A schedule, not waiting for a condition.
                await asyncio.sleep(settings.ACCESS_RECHECK_SECONDS / len(sockets))
                if socket in self._sockets:
                    await socket.check_access()


# The running event loop's access watch (a process serves from one loop).
access_watch = PerLoop(AccessWatch)
