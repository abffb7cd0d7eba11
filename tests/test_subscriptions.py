"""Each subscription over both subprotocols: its first result, then one result per change.

Changes are made over GraphQL, through the admin and by plain ORM code; every test waits for
the subscription's first result before it changes anything.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from catalog.models import project_today
from tests.support.listening import until_listening
from tests.support.websocket import PROTOCOLS, TRANSPORT_WS, GraphQLWebSocket
from tests.support.writers import WRITERS, make_writer

pytestmark = pytest.mark.django_db(transaction=True)

CASES = list(itertools.product(PROTOCOLS, WRITERS))
IDS = [f"{protocol}-{writer}" for protocol, writer in CASES]

SOURCE_FIELDS = "id country status deliveryStatus version"


async def run_lifecycle(writer: Any, on_change: Any) -> str:
    """Make one change of each kind to a new source, calling `on_change(kind, source_id)` after each."""
    source_id = await writer.add(status="INACTIVE")
    await on_change("CREATED", source_id)
    await writer.update(source_id, country="Germany", currentUpdate=project_today())
    await on_change("UPDATED", source_id)
    for kind, name in (
        ("ACTIVATED", "activate"),
        ("DEACTIVATED", "deactivate"),
        ("REACTIVATED", "reactivate"),
    ):
        await writer.transition(name, source_id)
        await on_change(kind, source_id)
    await writer.delete(source_id)
    await on_change("DELETED", source_id)
    return source_id


# The source after each change: (country, status, deliveryStatus, version).
EXPECTED = {
    "CREATED": ("France", "INACTIVE", "UNKNOWN", 1),
    "UPDATED": ("Germany", "INACTIVE", "RECEIVED", 2),
    "ACTIVATED": ("Germany", "ACTIVE", "RECEIVED", 3),
    "DEACTIVATED": ("Germany", "INACTIVE", "RECEIVED", 4),
    "REACTIVATED": ("Germany", "ACTIVE", "RECEIVED", 5),
}


def as_expected(source: dict[str, Any]) -> tuple[str, str, str, int]:
    return (source["country"], source["status"], source["deliveryStatus"], source["version"])


@pytest.mark.parametrize(("protocol", "writer_name"), CASES, ids=IDS)
async def test_source_events_delivers_each_change_once_in_order(protocol: str, writer_name: str) -> None:
    writer = await make_writer(writer_name)
    async with GraphQLWebSocket(protocol) as ws:
        operation = await ws.subscribe(
            "subscription { sourceEvents { cursor kind sourceId version actor source { %s } } }" % SOURCE_FIELDS
        )
        await until_listening(1)
        cursors: list[str] = []

        async def on_change(kind: str, source_id: str) -> None:
            event = (await ws.next_data(operation))["sourceEvents"]
            assert (event["kind"], event["sourceId"], event["actor"]) == (kind, source_id, writer.actor)
            if kind == "DELETED":
                assert (event["source"], event["version"]) == (None, 6)
            else:
                assert as_expected(event["source"]) == EXPECTED[kind]
                assert event["source"]["id"] == source_id
                assert event["version"] == EXPECTED[kind][3]
            cursors.append(event["cursor"])

        await run_lifecycle(writer, on_change)
        assert cursors == sorted(cursors)
        assert len(set(cursors)) == 6


@pytest.mark.parametrize(("protocol", "writer_name"), CASES, ids=IDS)
async def test_sources_sends_the_list_then_the_list_after_each_change(protocol: str, writer_name: str) -> None:
    writer = await make_writer(writer_name)
    async with GraphQLWebSocket(protocol) as ws:
        operation = await ws.subscribe("subscription { sources { %s } }" % SOURCE_FIELDS)
        assert (await ws.next_data(operation)) == {"sources": []}

        async def on_change(kind: str, source_id: str) -> None:
            sources = (await ws.next_data(operation))["sources"]
            if kind == "DELETED":
                assert sources == []
            else:
                assert [(s["id"], *as_expected(s)) for s in sources] == [(source_id, *EXPECTED[kind])]

        await run_lifecycle(writer, on_change)


@pytest.mark.parametrize(("protocol", "writer_name"), CASES, ids=IDS)
async def test_source_follows_one_source_until_it_is_deleted(protocol: str, writer_name: str) -> None:
    writer = await make_writer(writer_name)
    source_id = await writer.add(status="INACTIVE")
    async with GraphQLWebSocket(protocol) as ws:
        operation = await ws.subscribe(
            "subscription($id: ID!) { source(id: $id) { %s } }" % SOURCE_FIELDS, {"id": source_id}
        )
        assert as_expected((await ws.next_data(operation))["source"]) == EXPECTED["CREATED"]

        await writer.update(source_id, country="Germany", currentUpdate=project_today())
        assert as_expected((await ws.next_data(operation))["source"]) == EXPECTED["UPDATED"]
        for kind, name in (
            ("ACTIVATED", "activate"),
            ("DEACTIVATED", "deactivate"),
            ("REACTIVATED", "reactivate"),
        ):
            await writer.transition(name, source_id)
            assert as_expected((await ws.next_data(operation))["source"]) == EXPECTED[kind]
        await writer.delete(source_id)
        assert (await ws.next_data(operation)) == {"source": None}
        await ws.expect_complete(operation)


# The data library's non-zero counters after each change of the lifecycle.
EXPECTED_COUNTERS = {
    "CREATED": {"created": 1},
    "UPDATED": {"created": 1},
    "ACTIVATED": {"created": 1, "activated": 1, "received": 1, "completed": 1},
    "DEACTIVATED": {"created": 1, "activated": 1, "deactivated": 1},
    "REACTIVATED": {"created": 1, "activated": 1, "deactivated": 1, "received": 1, "completed": 1},
    "DELETED": {},
}


def nonzero_counters(data_library: dict[str, Any]) -> dict[str, int]:
    return {
        counter["key"]: counter["count"]
        for section in data_library["sections"]
        for counter in section["counters"]
        if counter["count"]
    }


@pytest.mark.parametrize(("protocol", "writer_name"), CASES, ids=IDS)
async def test_data_library_sends_counters_then_counters_after_each_change(protocol: str, writer_name: str) -> None:
    writer = await make_writer(writer_name)
    async with GraphQLWebSocket(protocol) as ws:
        operation = await ws.subscribe(
            "subscription { dataLibrary { windowDays sections { key counters { key count } } } }"
        )
        first = (await ws.next_data(operation))["dataLibrary"]
        assert first["windowDays"] == 30
        assert nonzero_counters(first) == {}

        async def on_change(kind: str, source_id: str) -> None:
            assert nonzero_counters((await ws.next_data(operation))["dataLibrary"]) == EXPECTED_COUNTERS[kind]

        await run_lifecycle(writer, on_change)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_several_subscriptions_on_one_socket_each_get_only_their_own_results(protocol: str) -> None:
    writer = await make_writer("graphql")
    first_id = await writer.add(country="First")
    second_id = await writer.add(country="Second")
    async with GraphQLWebSocket(protocol) as ws:
        events = await ws.subscribe("subscription { sourceEvents { sourceId version } }")
        first = await ws.subscribe("subscription($id: ID!) { source(id: $id) { id country } }", {"id": first_id})
        second = await ws.subscribe("subscription($id: ID!) { source(id: $id) { id country } }", {"id": second_id})
        listing = await ws.subscribe("subscription { sources { country } }")
        initial = await ws.next_data_of_each(first, second, listing)
        assert initial[first] == {"source": {"id": first_id, "country": "First"}}
        assert initial[listing] == {"sources": [{"country": "Second"}, {"country": "First"}]}

        await writer.update(second_id, country="Second, edited")

        changed = await ws.next_data_of_each(events, second, listing)
        assert changed[events] == {"sourceEvents": {"sourceId": second_id, "version": 2}}
        assert changed[second] == {"source": {"id": second_id, "country": "Second, edited"}}
        assert changed[listing] == {"sources": [{"country": "Second, edited"}, {"country": "First"}]}

        # Nothing more for this change: the next frames are all about the next one.
        await writer.update(first_id, country="First, edited")
        changed = await ws.next_data_of_each(events, first, listing)
        assert changed[events] == {"sourceEvents": {"sourceId": first_id, "version": 2}}
        assert changed[first] == {"source": {"id": first_id, "country": "First, edited"}}


async def test_queries_and_mutations_also_run_over_graphql_transport_ws() -> None:
    async with GraphQLWebSocket(TRANSPORT_WS) as ws:
        added = await ws.subscribe(
            'mutation { addSource(input: {country: "France", dataVendor: "GfK", panel: "P", dataType: "Sales",'
            ' createdBy: "ws"}) { ... on Source { country version } } }'
        )
        assert await ws.next_data(added) == {"addSource": {"country": "France", "version": 1}}
        await ws.expect_complete(added)
        listed = await ws.subscribe("{ sources { dataVendor } }")
        assert await ws.next_data(listed) == {"sources": [{"dataVendor": "GfK"}]}
        await ws.expect_complete(listed)


async def test_a_legacy_stop_before_the_subscription_has_started_is_answered_with_complete(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import asyncio

    from graph.websocket import GraphQLConsumer
    from tests.support.websocket import LEGACY_WS

    checking = asyncio.Event()

    async def still_checking(self: GraphQLConsumer) -> bool:
        checking.set()
        await asyncio.Event().wait()  # the permission check is still under way when the stop comes
        return True

    monkeypatch.setattr(GraphQLConsumer, "may_join_cohorts", still_checking)
    async with GraphQLWebSocket(LEGACY_WS) as ws:
        operation = await ws.subscribe("subscription { dataLibrary { windowDays } }")
        await checking.wait()
        await ws.stop(operation)
        await ws.expect_complete(operation)
