"""Work that is the same for every subscriber is done once per event in the process."""

from __future__ import annotations

import contextlib
from collections import Counter
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from catalog import selectors, services
from catalog.models import SourceEvent
from graph import subscriptions
from tests.support.sources import source_values
from tests.support.websocket import PROTOCOLS, GraphQLWebSocket

pytestmark = pytest.mark.django_db(transaction=True)

SUBSCRIBERS = 20


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Count the computations the subscriptions make."""
    counted: Counter[str] = Counter()
    compute_library = selectors.data_library
    find_events = SourceEvent.objects.filter

    def data_library(**kwargs: Any) -> selectors.DataLibrary:
        counted["data_library"] += 1
        return compute_library(**kwargs)

    def filter_events(*args: Any, **kwargs: Any) -> Any:
        if set(kwargs) == {"pk"}:  # loading one event (the data library filters the log too)
            counted["event"] += 1
        return find_events(*args, **kwargs)

    monkeypatch.setattr(subscriptions.selectors, "data_library", data_library)
    monkeypatch.setattr(subscriptions.SourceEvent.objects, "filter", filter_events)
    return counted


async def test_one_change_costs_one_data_library_and_one_event_load_for_all_subscribers(calls: Counter[str]) -> None:
    async with contextlib.AsyncExitStack() as stack:
        sockets = [await stack.enter_async_context(GraphQLWebSocket(PROTOCOLS[n % 2])) for n in range(SUBSCRIBERS)]
        operations = []
        for ws in sockets:
            # sourceEvents sends nothing first; the dataLibrary subscribed after it on the same
            # socket does, and its first result means the server has started both.
            events = await ws.subscribe("subscription { sourceEvents { kind source { country } } }")
            library = await ws.subscribe("subscription { dataLibrary { sections { counters { key count } } } }")
            await ws.next_data(library)
            operations.append((ws, library, events))
        assert calls == {"data_library": SUBSCRIBERS}  # each first result is that subscriber's own

        await sync_to_async(services.source_create)(actor=None, **source_values(country="Fanned"))

        for ws, library, events in operations:
            received = {
                message["id"]: message["payload"]["data"] for message in [await ws.receive(), await ws.receive()]
            }
            assert received[events] == {"sourceEvents": {"kind": "CREATED", "source": {"country": "Fanned"}}}
            created = received[library]["dataLibrary"]["sections"][0]["counters"][0]
            assert created == {"key": "created", "count": 1}
        assert calls == {"data_library": SUBSCRIBERS + 1, "event": 1}
