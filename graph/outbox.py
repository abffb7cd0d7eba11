"""What the server holds for one socket, bounded by WEBSOCKET_SEND_BUFFER_BYTES.

A client that stops reading (a laptop lid closed, a stalled proxy) would otherwise make the
server hold everything sent to it: daphne writes into a transport that buffers without a
bound. Every frame goes through the socket's Outbox, which asks the transport how much it
holds (project.sendbuffer; the in-process test client has no transport, and no bound):

- under the bound, a frame is written at once;
- over it, a live state's result (sources, source, dataLibrary) waits, and a newer result of
  the same subscription replaces it: the client gets the newest state once it reads again
  (API.md allows intermediate states to be skipped, never the last);
- a sourceEvents result is never skipped: over the bound, the socket is closed with 4509,
  which graphql-ws clients retry, and the client resumes with `after` (its last cursor);
- the other frames that wait (completions, errors, Strawberry's own) are bounded too: past
  the bound, the socket is closed with 4509 as well.

Each such close is logged and counted (catalog_slow_client_closes_total). A client that reads
nothing at all for long stops answering daphne's pings too: project.serve then closes it with
4509 as well, instead of autobahn's reset. Either way the connection lingers
CLOSE_LINGER_SECONDS after the close frame, for the client to read up to it and learn why.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from graph.metrics import SLOW_CLIENT_CLOSES

logger = logging.getLogger(__name__)

SLOW_CLIENT = 4509  # like a 509 (bandwidth limit exceeded): it read too slowly; reconnect and resume
SLOW_CLIENT_REASON = "The client read its results too slowly; reconnect (sourceEvents: resume with after)."


# While frames wait, the transport is looked at this often: they are written once it holds
# less than the bound again. Twisted's producer API would say when it drains, but daphne's
# HTTP channel holds the transport's one producer slot for the life of the WebSocket.
DRAIN_CHECK_SECONDS = 0.05


# How long the connection stays after a slow client's close frame, for it to read up to it and
# learn why (then autobahn drops it): as long as daphne's ping timeout (30 s) gives it anyway.
# Meanwhile the server holds at most WEBSOCKET_SEND_BUFFER_BYTES for it.
CLOSE_LINGER_SECONDS = 30.0


class SendBuffer(Protocol):
    """The socket's transport, as project.sendbuffer shows it."""

    def pending(self) -> int: ...

    def linger(self, seconds: float) -> None: ...


class Outbox:
    """One socket's frames: written at once, held while the client reads too slowly, or a close."""

    def __init__(
        self,
        send: Callable[[str], Awaitable[None]],
        close: Callable[[], Awaitable[None]],
        buffer: SendBuffer | None,
        limit: int,
    ) -> None:
        self._send, self._close, self._buffer, self._limit = send, close, buffer, limit
        # In the order they must be written: a state's result under its operation id (str),
        # anything else under a number of its own.
        self._held: dict[object, str] = {}
        self._held_bytes = 0  # of the frames that are not states' results
        self._unique = itertools.count()
        self._check: asyncio.TimerHandle | None = None
        self._flushing: asyncio.Task[None] | None = None
        self.overflowed = False

    async def put(self, frame: str, *, state_of: str | None = None, event: bool = False) -> None:
        """Write `frame`, or hold it while the socket is over the bound.

        `state_of`: the frame is a live state's result, replaced by a newer one of the same
        subscription while held. `event`: a sourceEvents result, which may not wait or be lost.
        """
        if self.overflowed:
            return
        if self._buffer is None or (not self._held and self._buffer.pending() <= self._limit):
            await self._send(frame)
            return
        if event:
            await self._overflow("a sourceEvents result could not be written")
            return
        if state_of is not None:
            # A replaced result keeps its place: it was due first. One per subscription at
            # most, and a socket runs at most GRAPHQL_MAX_OPERATIONS_PER_CONNECTION of them.
            self._held[state_of] = frame
        else:
            self._held[next(self._unique)] = frame
            self._held_bytes += len(frame)
            if self._held_bytes > self._limit:
                await self._overflow("the frames waiting for it passed the bound")
                return
        if self._check is None and self._flushing is None:
            self._check = asyncio.get_running_loop().call_later(DRAIN_CHECK_SECONDS, self._look)

    def _look(self) -> None:
        self._check = None
        if self.overflowed or not self._held:
            return
        if self._buffer is not None and self._buffer.pending() <= self._limit:
            self._flushing = asyncio.ensure_future(self._flush())
        else:
            self._check = asyncio.get_running_loop().call_later(DRAIN_CHECK_SECONDS, self._look)

    async def _flush(self) -> None:
        try:
            while self._held and not self.overflowed and self._buffer.pending() <= self._limit:
                key = next(iter(self._held))
                frame = self._held.pop(key)
                if not isinstance(key, str):
                    self._held_bytes -= len(frame)
                await self._send(frame)
        finally:
            self._flushing = None
        if self._held and not self.overflowed:
            self._check = asyncio.get_running_loop().call_later(DRAIN_CHECK_SECONDS, self._look)

    def discard(self) -> None:
        """Forget what waits, and stop looking: the socket has closed."""
        self._held.clear()
        self._held_bytes = 0
        if self._check is not None:
            self._check.cancel()
            self._check = None

    async def _overflow(self, why: str) -> None:
        self.overflowed = True
        self.discard()
        SLOW_CLIENT_CLOSES.inc()
        if self._buffer is not None:
            self._buffer.linger(CLOSE_LINGER_SECONDS)
        logger.warning(
            "Closing a WebSocket with %d: %s (over WEBSOCKET_SEND_BUFFER_BYTES = %d)", SLOW_CLIENT, why, self._limit
        )
        await self._close()


def send_buffer(scope: dict[str, Any]) -> SendBuffer | None:
    """Return the view project.serve gives of the socket's transport, if the server gave one."""
    return scope.get("extensions", {}).get("catalog.send_buffer")
