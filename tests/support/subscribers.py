"""`sourceEvents` subscribers on server processes, collecting every event as it arrives.

A test with several processes cannot look into their channel layers to see that a subscription
listens (`tests.support.listening` sees this process only): `until_live` makes changes until
every subscriber has received one.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Callable, Sequence
from typing import Any

from asgiref.sync import sync_to_async

from catalog.models import Source
from tests.support.http import post_graphql
from tests.support.polling import DEADLINE, apoll_until
from tests.support.sources import source_values
from tests.support.websocket import TRANSPORT_WS, GraphQLWebSocket

EVENTS = "subscription { sourceEvents { cursor kind sourceId version source { scopeOfSubscription } } }"
UPDATE = """
mutation ($id: ID!, $scope: String!) {
  updateSource(id: $id, input: {scopeOfSubscription: $scope}) { __typename }
}
"""
UPDATED = (200, {"data": {"updateSource": {"__typename": "Source"}}})

Events = list[dict[str, Any]]


class Subscriber:
    """One socket to a server process with one `sourceEvents` subscription; use as `async with`."""

    def __init__(self, address: str, token: str) -> None:
        self.address = address
        self.events: Events = []  # every event received, in order
        self._socket = GraphQLWebSocket(TRANSPORT_WS, address=address, token=token, timeout=DEADLINE)
        self._arrived = asyncio.Event()  # set at each event
        self._collecting: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Subscriber:
        await self._socket.connect()
        operation = await self._socket.subscribe(EVENTS)
        self._collecting = asyncio.create_task(self._collect(operation))
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._collecting is not None:
            self._collecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._collecting
        await self._socket.close()

    def assert_open(self) -> None:
        """Assert that the socket is open and that everything it received was an event."""
        assert self._collecting is not None, "not subscribed"
        if self._collecting.done():
            self._collecting.result()  # raises what went wrong
            raise AssertionError(f"the subscription on {self.address} ended")

    async def until(self, condition: Callable[[Events], bool], what: str, *, within: float = DEADLINE) -> None:
        """Wait until `condition(events)` holds; `what` says what it means, should it not."""

        def holds() -> bool:
            self.assert_open()
            return condition(self.events)

        await apoll_until(holds, f"{what} on {self.address}", within=within, wake=self._arrived)

    async def _collect(self, operation: str) -> None:
        async for message in self._socket.frames():
            assert message["id"] == operation and message["type"] == "next", message
            assert "errors" not in message["payload"], message
            self.events.append(message["payload"]["data"]["sourceEvents"])
            self._arrived.set()
        raise AssertionError(f"the server closed the socket: {await self._socket.closed_with()}")


def change_scope(address: str, token: str, source_id: str, scope: str) -> tuple[int, Any]:
    """Set a source's scopeOfSubscription through the server at `address`; return the status and body."""
    return post_graphql(address, UPDATE, {"id": source_id, "scope": scope}, token=token)


async def until_live(subscribers: Sequence[Subscriber], token: str, address: str) -> str:
    """Change a source until every subscriber has received one of its changes; return its id.

    A `sourceEvents` subscription sends nothing when it starts, so a change is the only sign
    that it is live. Changes made before it listens never reach it, hence a new change at each
    look until every subscriber has one.
    """
    warm_up = str((await sync_to_async(Source.objects.create)(**source_values(panel="Warm-up"))).pk)
    rounds = itertools.count()

    async def every_one_received_one() -> bool:
        if all(any(event["sourceId"] == warm_up for event in s.events) for s in subscribers):
            return True
        for subscriber in subscribers:
            subscriber.assert_open()
        assert await sync_to_async(change_scope)(address, token, warm_up, f"warm-up {next(rounds)}") == UPDATED
        return False

    await apoll_until(every_one_received_one, "every subscriber receives a change", interval=0.1)
    return warm_up
