"""Two real server processes sharing PostgreSQL and Redis: every change reaches every subscriber.

The subscribers are `graphql-transport-ws` clients over real sockets on both processes; the
writers are HTTP clients sending mutations as fast as eight threads can.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from catalog.models import Source, SourceEvent, last_sequence
from tests.support.identities import issue_token
from tests.support.services import needs_services, servers
from tests.support.sources import source_values
from tests.support.subscribers import UPDATED, Subscriber, change_scope, until_live

pytestmark = [needs_services, pytest.mark.django_db(transaction=True)]

WRITERS = 8


@pytest.fixture
def two_processes(django_db_setup: None, tmp_path: Path) -> Iterator[list[str]]:
    # New processes for each test: the test database is emptied between tests, which starts
    # the change numbers again, and a running process remembers reads of the log by number.
    with servers(2, tmp_path) as addresses:
        yield addresses


async def write_concurrently(changes: list[tuple[str, str, str]], token: str) -> None:
    """Send each (address, source id, scope) update, WRITERS at a time; every one must succeed."""
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(WRITERS) as pool:
        results = await asyncio.gather(
            *(loop.run_in_executor(pool, change_scope, address, token, pk, scope) for address, pk, scope in changes)
        )
    assert [result for result in results if result != UPDATED] == []


async def run_scenario(subscribe_on: list[str], write_through: list[str], changes: int) -> None:
    token = await sync_to_async(issue_token)("admin", username="several-processes")
    sources = [str(pk) for pk in await sync_to_async(_make_sources)(10)]
    async with AsyncExitStack() as stack:
        subscribers = [await stack.enter_async_context(Subscriber(address, token)) for address in subscribe_on]
        warm_up = await until_live(subscribers, token, write_through[0])
        start = await sync_to_async(last_sequence)()
        plan = [
            (write_through[n % len(write_through)], sources[n % len(sources)], f"change {n}") for n in range(changes)
        ]
        await write_concurrently(plan, token)

        logged = await sync_to_async(_logged_after)(start, warm_up)
        assert len(logged) == changes
        for subscriber in subscribers:
            await subscriber.until(
                lambda events: len([e for e in events if e["sourceId"] != warm_up]) >= changes,
                f"{changes} changes received",
            )
            received = [e for e in subscriber.events if e["sourceId"] != warm_up]
            # Every change once, in commit order: exactly the log, in the log's order.
            assert received == logged, f"subscriber on {subscriber.address}"
        for subscriber in subscribers:
            subscriber.assert_open()


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
