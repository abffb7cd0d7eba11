"""Subscribers of one operation share one execution per change; other operations get their own results."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from catalog import selectors, services
from catalog.models import Source
from graph import execution, subscriptions
from tests.support.listening import until_listening
from tests.support.sources import source_values
from tests.support.websocket import PROTOCOLS, GraphQLWebSocket

pytestmark = pytest.mark.django_db(transaction=True)

SUBSCRIBERS = 100
EVENTS = "subscription { sourceEvents { kind source { country } } }"
LIBRARY = "subscription { dataLibrary { sections { counters { key count } } } }"


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Count the executions of subscription events, and the data library's computations."""
    counts: Counter[str] = Counter()
    build = execution.LiveExecutionContext.build_per_event_executor
    compute_library = selectors.data_library

    def build_per_event_executor(self: execution.LiveExecutionContext, payload: Any) -> Any:
        counts["executions"] += 1
        return build(self, payload)

    def data_library(**kwargs: Any) -> selectors.DataLibrary:
        counts["data_library"] += 1
        return compute_library(**kwargs)

    monkeypatch.setattr(execution.LiveExecutionContext, "build_per_event_executor", build_per_event_executor)
    monkeypatch.setattr(subscriptions.selectors, "data_library", data_library)
    return counts


async def test_a_hundred_subscribers_of_one_operation_cost_one_execution_per_change(counted: Counter[str]) -> None:
    async with contextlib.AsyncExitStack() as stack:
        sockets = [await stack.enter_async_context(GraphQLWebSocket(PROTOCOLS[n % 2])) for n in range(SUBSCRIBERS)]
        operations = [(ws, await ws.subscribe(EVENTS)) for ws in sockets]
        await until_listening(SUBSCRIBERS)
        assert counted == {}

        await sync_to_async(services.source_create)(actor=None, **source_values(country="Fanned"))
        for ws, operation in operations:
            assert await ws.next_data(operation) == {
                "sourceEvents": {"kind": "CREATED", "source": {"country": "Fanned"}}
            }
        assert counted == {"executions": 1}

        source = await Source.objects.aget(country="Fanned")
        await sync_to_async(services.source_deactivate)(actor=None, source_id=source.pk)
        for ws, operation in operations:
            assert await ws.next_data(operation) == {
                "sourceEvents": {"kind": "DEACTIVATED", "source": {"country": "Fanned"}}
            }
        assert counted == {"executions": 2}


async def test_a_late_member_gets_the_cohorts_current_result_without_computing_it(counted: Counter[str]) -> None:
    async with GraphQLWebSocket(PROTOCOLS[0]) as first, GraphQLWebSocket(PROTOCOLS[1]) as late:
        early = await first.subscribe(LIBRARY)
        library = await first.next_data(early)
        assert library["dataLibrary"]["sections"][0]["counters"][0] == {"key": "created", "count": 0}
        assert counted == {"executions": 1, "data_library": 1}

        joined = await late.subscribe(LIBRARY)
        assert await late.next_data(joined) == library
        assert counted == {"executions": 1, "data_library": 1}  # sent as it was, not computed again

        await sync_to_async(services.source_create)(actor=None, **source_values())
        library = await first.next_data(early)
        assert library["dataLibrary"]["sections"][0]["counters"][0] == {"key": "created", "count": 1}
        assert await late.next_data(joined) == library
        assert counted == {"executions": 2, "data_library": 2}


async def test_subscribers_of_different_operations_get_their_own_results(counted: Counter[str]) -> None:
    france = await sync_to_async(services.source_create)(actor=None, **source_values(country="France"))
    operations = {
        "countries": ("subscription { sources { country } }", None),
        "vendors": ("subscription { sources { dataVendor version } }", None),
        "france only": (
            "subscription ($c: String!) { sources(filters: {country: $c}) { country version } }",
            {"c": "France"},
        ),
        "spain only": (
            "subscription ($c: String!) { sources(filters: {country: $c}) { country version } }",
            {"c": "Spain"},
        ),
        "one source": ("subscription ($id: ID!) { source(id: $id) { country version } }", {"id": str(france.pk)}),
        "created only": ("subscription { sourceEvents(kinds: [CREATED]) { kind source { country } } }", None),
        "updates only": ("subscription { sourceEvents(kinds: [UPDATED]) { kind version } }", None),
    }
    states = ("countries", "vendors", "france only", "spain only", "one source")
    async with contextlib.AsyncExitStack() as stack:
        subscribed = {}
        for name, (query, variables) in operations.items():
            ws = await stack.enter_async_context(GraphQLWebSocket(PROTOCOLS[len(subscribed) % 2]))
            subscribed[name] = (ws, await ws.subscribe(query, variables))

        async def next_results(*names: str) -> dict[str, Any]:
            return {name: await subscribed[name][0].next_data(subscribed[name][1]) for name in names}

        assert await next_results(*states) == {
            "countries": {"sources": [{"country": "France"}]},
            "vendors": {"sources": [{"dataVendor": "IQVIA", "version": 1}]},
            "france only": {"sources": [{"country": "France", "version": 1}]},
            "spain only": {"sources": []},
            "one source": {"source": {"country": "France", "version": 1}},
        }
        await until_listening(len(operations))

        await sync_to_async(services.source_update)(actor=None, source_id=france.pk, data={"data_vendor": "Kantar"})
        assert await next_results(*states, "updates only") == {
            "countries": {"sources": [{"country": "France"}]},
            "vendors": {"sources": [{"dataVendor": "Kantar", "version": 2}]},
            "france only": {"sources": [{"country": "France", "version": 2}]},
            "spain only": {"sources": []},
            "one source": {"source": {"country": "France", "version": 2}},
            "updates only": {"sourceEvents": {"kind": "UPDATED", "version": 2}},
        }

        await sync_to_async(services.source_create)(actor=None, **source_values(country="Spain"))
        # The source(id) subscriber hears nothing: the change is another source's.
        assert await next_results("countries", "vendors", "france only", "spain only", "created only") == {
            "countries": {"sources": [{"country": "Spain"}, {"country": "France"}]},
            "vendors": {"sources": [{"dataVendor": "IQVIA", "version": 1}, {"dataVendor": "Kantar", "version": 2}]},
            "france only": {"sources": [{"country": "France", "version": 2}]},
            "spain only": {"sources": [{"country": "Spain", "version": 1}]},
            "created only": {"sourceEvents": {"kind": "CREATED", "source": {"country": "Spain"}}},
        }
        # One execution per operation per change: those that had a result to send.
        assert counted["executions"] == 5 + 6 + 5


def test_a_member_stopped_before_its_floor_is_known_is_admitted_without_looping() -> None:
    """Its operation completed while it waited for the log's position: admit() must still return.

    Run in a thread of its own: a loop that never awaits would block any event loop it ran in,
    and the test would hang instead of failing.
    """
    import threading

    from graph.cohorts import Cohort, Member, Outcome, operation_key

    async def admit_a_stopped_member() -> None:
        sent: list[str] = []

        async def send(frame: str) -> None:
            sent.append(frame)

        cohort = Cohort(operation_key("subscription { dataLibrary { windowDays } }", None, None), {})
        cohort.listening(5)
        cohort.latest, cohort.position = Outcome('{"data":{}}', 5, "state"), 5
        member = Member('{"id":"1","type":"next","payload":', send, stopped=True)

        async def floor() -> int:
            return 5

        await cohort.admit(member, floor)
        assert sent == []

    admitted = threading.Thread(target=asyncio.run, args=(admit_a_stopped_member(),), daemon=True)
    admitted.start()
    admitted.join(10)  # a guard against the hang this test is about, not a wait for a condition
    assert not admitted.is_alive(), "admit() kept looping for a stopped member"
