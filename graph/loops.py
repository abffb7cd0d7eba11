"""One object per event loop (a process serves from one loop; each test runs its own), and its topic's membership."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)

T = TypeVar("T")


class PerLoop(Generic[T]):
    """Call it for the running loop's instance of what `factory` makes (made on first call).

    Keyed by loop, not global: an object holding tasks and futures belongs to the loop that made
    them, and a loop that is gone takes its instance with it.
    """

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._instances: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, T] = weakref.WeakKeyDictionary()

    def __call__(self) -> T:
        loop = asyncio.get_running_loop()
        instance = self._instances.get(loop)
        if instance is None:
            instance = self._instances[loop] = self._factory()
        return instance


# How long one attempt to join a topic may take: the channel layer is on the path of a new
# socket (its first subscription starts the feed, its sign-in the access watch), and a Redis
# that is away must not hold sign-in or a first result (channels-redis waits for it unbounded).
JOIN_SECONDS = 0.5
# After a failed attempt, the next one comes this much later, doubling up to the maximum.
REJOIN_FIRST, REJOIN_MAX = 0.1, 2.0


class Membership:
    """A channel of its own in a topic's group: joined now if the layer answers, else later.

    The process's change feed and access watch each hold one, for all the sockets of their
    loop. `join()` tries once, within JOIN_SECONDS; `rejoin_after()` says when to try again.
    Without a channel layer there is nothing to join: `joined` is True and `channel` None.
    """

    def __init__(self, topic: str, prefix: str) -> None:
        self.topic, self.prefix = topic, prefix
        self.layer = get_channel_layer()
        self.channel: str | None = None
        self.joined = self.layer is None
        self._retry = REJOIN_FIRST

    async def join(self) -> bool:
        """Try to join within JOIN_SECONDS; return whether the membership now holds."""
        if self.joined:
            return True
        try:
            async with asyncio.timeout(JOIN_SECONDS):
                if self.channel is None:
                    self.channel = await self.layer.new_channel(self.prefix)
                await self.layer.group_add(self.topic, self.channel)
        except Exception as error:
            why = str(error) or type(error).__name__
            logger.warning("Could not join %s on the channel layer (%s); trying again", self.topic, why)
            self._retry = min(self._retry * 2, REJOIN_MAX)
            return False
        self.joined, self._retry = True, REJOIN_FIRST
        return True

    def rejoin_after(self) -> float:
        """Return the seconds to wait before the next attempt to join."""
        return self._retry

    async def receive(self) -> dict[str, Any]:
        """Return the next message to the channel (once joined)."""
        return await self.layer.receive(self.channel)

    async def leave(self) -> None:
        if self.channel is not None and self.layer is not None:
            with contextlib.suppress(Exception):  # leaving: a layer that is away forgets it anyway
                async with asyncio.timeout(JOIN_SECONDS):
                    await self.layer.group_discard(self.topic, self.channel)
