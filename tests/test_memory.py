"""A subscription that lives for a day of changes costs the same memory at its end as at its start."""

from __future__ import annotations

import gc
import tracemalloc

import pytest
from asgiref.sync import sync_to_async

from catalog import services
from tests.support.listening import until_listening
from tests.support.sources import source_values
from tests.support.websocket import TRANSPORT_WS, GraphQLWebSocket

pytestmark = pytest.mark.django_db(transaction=True)

CHANGES = 60
# Without graph.execution's fresh cache per event, graphql-core 3.3.2 keeps ~2.5 KiB per
# result: 60 changes leave ~150 KiB behind. Kept now: at most what the last change still holds.
MOST_KEPT = 24 * 1024


async def test_results_sent_leave_nothing_behind_in_graphql_core() -> None:
    source = await sync_to_async(services.source_create)(actor=None, **source_values())
    query = "subscription { sourceEvents { kind version source { country deliveryStatus nextStatus } } }"

    async def change_and_receive(version: int) -> None:
        await sync_to_async(services.source_update)(actor=None, source_id=source.pk, data={"panel": f"p{version}"})
        assert (await ws.next_data(operation))["sourceEvents"]["version"] == version

    async with GraphQLWebSocket(TRANSPORT_WS) as ws:
        operation = await ws.subscribe(query)
        await until_listening()
        for version in range(2, 5):  # caches that fill once, on the first results
            await change_and_receive(version)
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.take_snapshot()
            for version in range(5, 5 + CHANGES):
                await change_and_receive(version)
            gc.collect()
            after = tracemalloc.take_snapshot()
        finally:
            tracemalloc.stop()
    in_graphql = [tracemalloc.Filter(inclusive=True, filename_pattern="*/graphql/*")]
    kept = sum(stat.size_diff for stat in after.filter_traces(in_graphql).compare_to(before, "filename"))
    assert kept < MOST_KEPT, f"{kept} bytes allocated by graphql-core during {CHANGES} changes are still held"
