"""A change is published once, after it commits; a change that does not commit publishes nothing."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.db import transaction

from catalog import services
from catalog.models import Source, SourceEvent
from tests.support.listening import until_listening
from tests.support.sources import source_values
from tests.support.websocket import TRANSPORT_WS, GraphQLWebSocket

pytestmark = pytest.mark.django_db(transaction=True)

EVENTS = "subscription { sourceEvents { kind sourceId version source { country } } }"


class Abandon(Exception):
    """Raised to roll a transaction back."""


def create(**overrides: str) -> str:
    return str(services.source_create(actor=None, **source_values(**overrides)).pk)


async def test_a_rolled_back_change_publishes_nothing() -> None:
    async with GraphQLWebSocket(TRANSPORT_WS) as ws:
        operation = await ws.subscribe(EVENTS)
        await until_listening(1)

        @sync_to_async
        def create_then_roll_back() -> None:
            with pytest.raises(Abandon), transaction.atomic():
                create(country="Rolled back")
                raise Abandon

        await create_then_roll_back()
        committed = await sync_to_async(create)(country="Committed")

        event = (await ws.next_data(operation))["sourceEvents"]
        assert event == {"kind": "CREATED", "sourceId": committed, "version": 1, "source": {"country": "Committed"}}
        assert await sync_to_async(Source.objects.count)() == 1
        assert await sync_to_async(SourceEvent.objects.count)() == 1


async def test_a_rolled_back_savepoint_publishes_nothing_though_the_outer_transaction_commits() -> None:
    async with GraphQLWebSocket(TRANSPORT_WS) as ws:
        operation = await ws.subscribe(EVENTS)
        await until_listening(1)

        @sync_to_async
        def outer() -> str:
            with transaction.atomic():
                kept = create(country="Kept")
                with pytest.raises(Abandon), transaction.atomic():
                    create(country="Dropped")
                    raise Abandon
            return kept

        kept = await outer()
        then = await sync_to_async(create)(country="Then")
        assert (await ws.next_data(operation))["sourceEvents"]["sourceId"] == kept
        assert (await ws.next_data(operation))["sourceEvents"]["sourceId"] == then


async def test_changes_inside_one_transaction_are_each_published_once_after_it_commits() -> None:
    async with GraphQLWebSocket(TRANSPORT_WS) as ws:
        operation = await ws.subscribe(EVENTS)
        await until_listening(1)

        @sync_to_async
        def several_changes() -> str:
            with transaction.atomic():
                source_id = create(country="One")
                services.source_update(actor=None, source_id=source_id, data={"country": "Two"})
                services.source_deactivate(actor=None, source_id=source_id)
            return source_id

        source_id = await several_changes()
        marker = await sync_to_async(create)(country="Marker")
        received = [(await ws.next_data(operation))["sourceEvents"] for _ in range(4)]
        assert [(e["kind"], e["sourceId"], e["version"]) for e in received] == [
            ("CREATED", source_id, 1),
            ("UPDATED", source_id, 2),
            ("DEACTIVATED", source_id, 3),
            ("CREATED", marker, 1),
        ]
        # Each event carries the source as that change left it, not as it is now.
        assert [e["source"]["country"] for e in received] == ["One", "Two", "Two", "Marker"]


async def test_an_update_that_changes_nothing_is_not_a_change() -> None:
    async with GraphQLWebSocket(TRANSPORT_WS) as ws:
        source_id = await sync_to_async(create)(country="Same")
        operation = await ws.subscribe(EVENTS)
        await until_listening(1)

        unchanged = await sync_to_async(services.source_update)(
            actor=None, source_id=source_id, data={"country": "  Same  "}
        )
        assert unchanged.version == 1
        marker = await sync_to_async(create)(country="Marker")
        assert (await ws.next_data(operation))["sourceEvents"]["sourceId"] == marker
