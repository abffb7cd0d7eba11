"""Two real daphne processes sharing PostgreSQL and Redis: every change reaches every subscriber.

The subscribers are raw `graphql-transport-ws` clients (the `websockets` library) on both
processes; the writers are HTTP clients sending mutations as fast as eight threads can.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import websockets
from asgiref.sync import sync_to_async

from catalog.models import Source, SourceEvent, last_sequence
from tests.support.identities import issue_token
from tests.support.services import needs_services, servers
from tests.support.sources import source_values

pytestmark = [needs_services, pytest.mark.django_db(transaction=True)]

WRITERS = 8
RECEIVE_TIMEOUT = 30
UPDATE = """
mutation ($id: ID!, $scope: String!) {
  updateSource(id: $id, input: {scopeOfSubscription: $scope}) { __typename }
}
"""
EVENTS = "subscription { sourceEvents { cursor kind sourceId version source { scopeOfSubscription } } }"


@pytest.fixture
def two_processes(django_db_setup: None, tmp_path: Path) -> Iterator[list[str]]:
    # New processes for each test: the test database is emptied between tests, which starts
    # the change numbers again, and a running process remembers reads of the log by number.
    with servers(2, tmp_path) as addresses:
        yield addresses


def post(address: str, token: str, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        f"http://{address}/graphql",
        data=json.dumps({"query": query, "variables": variables}).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(request, timeout=RECEIVE_TIMEOUT) as response:  # noqa: S310 (loopback test server)
        return json.load(response)


class Subscriber:
    """One socket with one `sourceEvents` subscription, collecting every event it is sent."""

    def __init__(self, address: str, token: str) -> None:
        self.address = address
        self.token = token
        self.events: list[dict[str, Any]] = []
        self.arrived = asyncio.Event()  # set on each event; the waiter clears it

    async def run(self) -> None:
        url = f"ws://{self.address}/graphql"
        async with websockets.connect(url, subprotocols=["graphql-transport-ws"]) as socket:
            await socket.send(
                json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {self.token}"}})
            )
            assert json.loads(await socket.recv()) == {"type": "connection_ack"}
            await socket.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": EVENTS}}))
            async for frame in socket:
                message = json.loads(frame)
                assert message["type"] == "next" and "errors" not in message["payload"], message
                self.events.append(message["payload"]["data"]["sourceEvents"])
                self.arrived.set()

    async def until(self, condition: Any) -> None:
        async with asyncio.timeout(RECEIVE_TIMEOUT):
            while not condition(self.events):
                self.arrived.clear()
                await self.arrived.wait()


async def until_live(subscribers: list[Subscriber], token: str, address: str) -> str:
    """Change a source until every subscriber has received one of its changes; return its id.

    A `sourceEvents` subscription sends nothing when it starts, so a change is the only sign
    that it is live. Changes made before it is may never reach it, hence one change per round.
    """
    warm_up = str((await sync_to_async(Source.objects.create)(**source_values(panel="Warm-up"))).pk)
    for round_number in range(50):
        await sync_to_async(post)(address, token, UPDATE, {"id": warm_up, "scope": f"warm-up {round_number}"})
        waits = [s.until(lambda events: any(e["sourceId"] == warm_up for e in events)) for s in subscribers]
        try:
            async with asyncio.timeout(1):
                await asyncio.gather(*waits)
            return warm_up
        except TimeoutError:
            continue  # some subscriber joined after this change: make another
    raise AssertionError("the subscribers never received a change")


async def write_concurrently(changes: list[tuple[str, str, str]], token: str) -> None:
    """Send each (address, source id, scope) update, WRITERS at a time; every one must succeed."""
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(WRITERS) as pool:
        results = await asyncio.gather(
            *(
                loop.run_in_executor(pool, post, address, token, UPDATE, {"id": pk, "scope": scope})
                for address, pk, scope in changes
            )
        )
    assert [result for result in results if result != {"data": {"updateSource": {"__typename": "Source"}}}] == []


async def run_scenario(subscribe_on: list[str], write_through: list[str], changes: int) -> None:
    token = await sync_to_async(issue_token)("admin", username="several-processes")
    sources = [str(pk) for pk in await sync_to_async(_make_sources)(10)]
    subscribers = [Subscriber(address, token) for address in subscribe_on]
    tasks = [asyncio.ensure_future(subscriber.run()) for subscriber in subscribers]
    try:
        warm_up = await until_live(subscribers, token, write_through[0])
        start = await sync_to_async(last_sequence)()
        plan = [
            (write_through[n % len(write_through)], sources[n % len(sources)], f"change {n}") for n in range(changes)
        ]
        await write_concurrently(plan, token)

        logged = await sync_to_async(_logged_after)(start, warm_up)
        assert len(logged) == changes
        for subscriber in subscribers:
            await subscriber.until(lambda events: len([e for e in events if e["sourceId"] != warm_up]) >= changes)
            received = [e for e in subscriber.events if e["sourceId"] != warm_up]
            # Every change once, in commit order: exactly the log, in the log's order.
            assert received == logged, f"subscriber on {subscriber.address}"
        assert all(not task.done() for task in tasks), [task.exception() for task in tasks if task.done()]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _make_sources(count: int) -> list[Any]:
    return [Source.objects.create(**source_values(panel=f"Panel {n}")).pk for n in range(count)]


def _logged_after(start: int, warm_up: str) -> list[dict[str, Any]]:
    """Return the changes logged after `start`, but the warm-up's, as sourceEvents sends them."""
    events = SourceEvent.objects.filter(sequence__gt=start).exclude(source_id=warm_up)
    return [
        {
            "cursor": event.cursor,
            "kind": event.kind,
            "sourceId": str(event.source_id),
            "version": event.version,
            "source": {"scopeOfSubscription": event.snapshot["scope_of_subscription"]},
        }
        for event in events.order_by("sequence")
    ]


async def test_500_changes_through_one_process_reach_a_subscriber_on_each_in_commit_order_once(
    two_processes: list[str], tmp_path: Path
) -> None:
    first, second = two_processes
    await run_scenario(subscribe_on=[first, second], write_through=[second], changes=500)


async def test_changes_through_both_processes_at_once_reach_every_subscriber_in_one_commit_order(
    two_processes: list[str], tmp_path: Path
) -> None:
    first, second = two_processes
    await run_scenario(subscribe_on=[first, second, first, second], write_through=[first, second], changes=300)
