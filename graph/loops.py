"""One object per event loop (a process serves from one loop; each test runs its own), and its topic."""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator, Callable
from typing import Any, Generic, TypeVar

from channels.layers import get_channel_layer

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


@contextlib.asynccontextmanager
async def joined(topic: str, prefix: str) -> AsyncIterator[tuple[Any, str | None]]:
    """Listen to `topic` on a channel of its own while inside: yield (layer, channel).

    (None, None) without a channel layer. The process's change feed and access watch each
    listen this way, once for all the sockets of their loop.
    """
    layer = get_channel_layer()
    if layer is None:
        yield None, None
        return
    channel = await layer.new_channel(prefix)
    await layer.group_add(topic, channel)
    try:
        yield layer, channel
    finally:
        with contextlib.suppress(Exception):  # leaving: a layer that is away forgets it anyway
            await layer.group_discard(topic, channel)
