"""channels-redis's core layer, kept alive through a Redis restart.

Upstream, a `receive()` that loses its Redis raises, which ends the consumer waiting on it
(daphne then closes the socket with 1011, which graphql-ws clients treat as fatal), and a
Redis that comes back empty has forgotten every group. Written by hand because neither
channels nor channels-redis offers this: here a `receive()` waits for Redis to come back, then
adds the process's channels to the groups they were in. Changes announced while Redis was away
are not lost to subscribers: the change feed reads them from the log (see graph.feed).
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from typing import Any

import redis.exceptions
from channels_redis.core import RedisChannelLayer

logger = logging.getLogger(__name__)

# Redis unreachable: refused, reset, timed out. Anything else is a bug and is raised.
UNREACHABLE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)
RETRY_FIRST, RETRY_MAX = 0.1, 2.0  # seconds between attempts, doubling up to the maximum


class ResilientRedisChannelLayer(RedisChannelLayer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._groups_of: defaultdict[str, set[str]] = defaultdict(set)  # channel -> its groups

    async def group_add(self, group: str, channel: str) -> None:
        self._groups_of[channel].add(group)  # first: a failed add is retried on recovery
        await super().group_add(group, channel)

    async def group_discard(self, group: str, channel: str) -> None:
        self._groups_of[channel].discard(group)
        if not self._groups_of[channel]:
            del self._groups_of[channel]
        await super().group_discard(group, channel)

    async def receive(self, channel: str) -> dict[str, Any]:
        delay = RETRY_FIRST
        while True:
            try:
                return await super().receive(channel)
            except UNREACHABLE as error:
                logger.warning("Redis unreachable for %s (%s); retrying in %.1f s", channel, error, delay)
            await asyncio.sleep(delay)  # backing off between attempts, not waiting for a condition
            delay = min(delay * 2, RETRY_MAX)
            try:
                await self._rejoin()
            except UNREACHABLE:
                continue  # still away: the next attempt rejoins
            delay = RETRY_FIRST

    async def _rejoin(self) -> None:
        # Every channel of the process, not just this one: only one receive() at a time
        # reads from Redis for all of them, so only it sees the failure.
        for channel, groups in list(self._groups_of.items()):
            for group in list(groups):
                await super().group_add(group, channel)
