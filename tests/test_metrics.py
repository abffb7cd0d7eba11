"""/metrics: who may read it, and each number moving as what it counts happens."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient
from prometheus_client.parser import text_string_to_metric_families

from catalog import services, signals
from catalog.models import last_sequence
from graph import subscriptions
from graph.feed import change_feed
from tests.support.identities import atoken
from tests.support.listening import until_listening
from tests.support.polling import apoll_until
from tests.support.sources import source_values
from tests.support.websocket import TRANSPORT_WS, GraphQLWebSocket

pytestmark = pytest.mark.django_db(transaction=True)

EVENTS = "subscription { sourceEvents { kind } }"
LIBRARY = "subscription { dataLibrary { sections { key counters { key count } } } }"


async def scrape(token: str) -> tuple[int, str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]:
    """GET /metrics with the token; return the status, the content type and every sample by name and labels."""
    response = await AsyncClient().get("/metrics", headers={"Authorization": f"Bearer {token}"})
    samples = {}
    if response.status_code == 200:
        for family in text_string_to_metric_families(response.content.decode()):
            for sample in family.samples:
                samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return response.status_code, response["Content-Type"], samples


class Scraper:
    """Reads /metrics as an operator's Prometheus would, and says how each sample moved."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.before: dict[Any, float] = {}

    async def start(self) -> None:
        self.before = (await scrape(self.token))[2]

    async def moved(self, *names: str) -> dict[str, float]:
        """Return how each sample named (name or name{label=value}) moved since start()."""
        status, _, now = await scrape(self.token)
        assert status == 200
        return {name: _value(now, name) - _value(self.before, name) for name in names}


def _value(samples: dict[Any, float], name: str) -> float:
    metric, _, label = name.partition("{")
    pairs = [pair.split("=") for pair in label.rstrip("}").split(",")] if label else []
    labels = tuple((key, value.strip('"')) for key, value in pairs)
    return samples.get((metric, labels), 0.0)


@pytest.fixture
async def scraper() -> Scraper:
    scraper = Scraper(await atoken("admin", username="operator"))
    await scraper.start()
    return scraper


async def test_metrics_need_a_user_with_view_metrics() -> None:
    client = AsyncClient()
    anonymous = await client.get("/metrics")
    assert anonymous.status_code == 401
    assert anonymous.json()["errors"][0]["extensions"] == {"code": "unauthenticated"}
    assert anonymous["WWW-Authenticate"] == "Bearer"

    wrong = await client.get("/metrics", headers={"Authorization": "Bearer cat_not-a-token"})
    assert (wrong.status_code, wrong.json()["errors"][0]["extensions"]) == (401, {"code": "unauthenticated"})

    reader = await client.get("/metrics", headers={"Authorization": f"Bearer {await atoken('reader')}"})
    assert reader.status_code == 403
    assert reader.json()["errors"][0] == {
        "message": "Missing permission accounts.view_metrics.",
        "extensions": {"code": "permission_denied"},
    }

    posted = await client.post("/metrics", headers={"Authorization": f"Bearer {await atoken('admin')}"})
    assert (posted.status_code, posted["Allow"]) == (405, "GET, HEAD")

    status, content_type, samples = await scrape(await atoken("admin"))
    assert (status, content_type) == (200, "text/plain; version=1.0.0; charset=utf-8")
    assert ("catalog_websocket_connections", ()) in samples
    assert ("process_resident_memory_bytes", ()) in samples


async def test_sockets_subscriptions_changes_results_and_delays_move_as_they_happen(scraper: Scraper) -> None:
    async with GraphQLWebSocket(TRANSPORT_WS) as ws:
        operation = await ws.subscribe(EVENTS)
        await until_listening(1)
        assert await scraper.moved("catalog_websocket_connections", 'catalog_subscriptions{field="sourceEvents"}') == {
            "catalog_websocket_connections": 1,
            'catalog_subscriptions{field="sourceEvents"}': 1,
        }

        await sync_to_async(services.source_create)(actor=None, **source_values())
        assert await ws.next_data(operation) == {"sourceEvents": {"kind": "CREATED"}}
        assert await scraper.moved(
            "catalog_changes_total",
            'catalog_results_sent_total{field="sourceEvents"}',
            "catalog_delivery_delay_seconds_count",
            "catalog_changes_read_from_log_total",
        ) == {
            "catalog_changes_total": 1,
            'catalog_results_sent_total{field="sourceEvents"}': 1,
            "catalog_delivery_delay_seconds_count": 1,
            "catalog_changes_read_from_log_total": 0,
        }
    # Both are gone once the socket has closed (the consumer counts itself out as it ends).
    assert await scraper.moved("catalog_websocket_connections", 'catalog_subscriptions{field="sourceEvents"}') == {
        "catalog_websocket_connections": 0,
        'catalog_subscriptions{field="sourceEvents"}': 0,
    }


async def test_changes_whose_announcement_was_lost_count_as_read_from_the_log(
    scraper: Scraper, monkeypatch: pytest.MonkeyPatch
) -> None:
    publish = signals.publish_source_event
    lost: list[int] = []

    def publish_all_but_the_first(event: Any) -> None:
        if not lost:
            lost.append(event.sequence)  # Redis was away, say
            return
        publish(event)

    monkeypatch.setattr(signals, "publish_source_event", publish_all_but_the_first)
    async with GraphQLWebSocket(TRANSPORT_WS) as ws:
        operation = await ws.subscribe(EVENTS)
        await until_listening(1)
        await sync_to_async(services.source_create)(actor=None, **source_values(country="Lost"))
        await sync_to_async(services.source_create)(actor=None, **source_values(country="Heard"))
        assert await ws.next_data(operation) == {"sourceEvents": {"kind": "CREATED"}}
        assert await ws.next_data(operation) == {"sourceEvents": {"kind": "CREATED"}}
    assert lost
    # The second announcement skipped a number: both changes were read from the log, in order.
    assert await scraper.moved("catalog_changes_read_from_log_total", "catalog_changes_total") == {
        "catalog_changes_read_from_log_total": 2,
        "catalog_changes_total": 2,
    }


@pytest.fixture
def held_library(monkeypatch: pytest.MonkeyPatch) -> tuple[asyncio.Event, asyncio.Event]:
    """Hold the data library's run before its second computation until released.

    It waits on the event loop, not in the thread that reads the log: the change feed goes on
    hearing changes meanwhile, as it does while a result is being sent to many sockets.
    """
    share = subscriptions.shared
    held, release = asyncio.Event(), asyncio.Event()
    calls = []

    async def shared(key: Any, work: Any) -> Any:
        calls.append(key)
        if len(calls) == 2:  # the first result after the subscriber's first
            held.set()
            await release.wait()
        return await share(key, work)

    monkeypatch.setattr(subscriptions, "shared", shared)
    return held, release


async def test_changes_that_come_while_a_live_result_is_computed_are_coalesced_into_the_next(
    scraper: Scraper, held_library: tuple[asyncio.Event, asyncio.Event]
) -> None:
    held, release = held_library
    async with GraphQLWebSocket(TRANSPORT_WS) as ws:
        operation = await ws.subscribe(LIBRARY)
        await ws.next_data(operation)

        create = sync_to_async(services.source_create)
        await create(actor=None, **source_values(country="First"))
        await held.wait()  # its result is being computed
        for country in ("Second", "Third"):
            await create(actor=None, **source_values(country=country))
        last = await sync_to_async(last_sequence)()
        await apoll_until(lambda: change_feed().upto == last, "the feed has handed out the third change")
        release.set()

        # The result for the first change is computed once released, and one more result
        # follows for the two that came meanwhile, not two.
        first, coalesced = await ws.next_data(operation), await ws.next_data(operation)
        assert (_created(first), _created(coalesced)) == (3, 3)
    coalesced, sent = (
        'catalog_coalesced_changes_total{field="dataLibrary"}',
        'catalog_results_sent_total{field="dataLibrary"}',
    )
    assert await scraper.moved(coalesced, sent) == {coalesced: 1, sent: 3}


def _created(data: dict[str, Any]) -> int:
    library = next(s for s in data["dataLibrary"]["sections"] if s["key"] == "library")
    return next(c["count"] for c in library["counters"] if c["key"] == "created")
