"""Live results change with the date: a fresh result shortly after midnight in the project time zone."""

from __future__ import annotations

import asyncio
import datetime as dt
import zoneinfo

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from catalog import models, services
from graph import feed
from tests.support.sources import source_values
from tests.support.websocket import TRANSPORT_WS, GraphQLWebSocket

PARIS = zoneinfo.ZoneInfo("Europe/Paris")


@pytest.mark.parametrize(
    ("day", "now", "seconds"),
    [
        (dt.date(2026, 11, 21), dt.datetime(2026, 11, 21, 23, 59, 0, tzinfo=PARIS), 61),
        (dt.date(2026, 11, 21), dt.datetime(2026, 11, 21, 22, 59, 0, tzinfo=dt.UTC), 61),  # 23:59 in Paris
        (dt.date(2026, 11, 21), dt.datetime(2026, 11, 21, 0, 0, 0, tzinfo=PARIS), 86_401),
        # The night the clocks go back lasts 25 hours, and the one they go forward 23.
        (dt.date(2026, 10, 25), dt.datetime(2026, 10, 25, 0, 0, 0, tzinfo=PARIS), 90_001),
        (dt.date(2026, 3, 29), dt.datetime(2026, 3, 29, 0, 0, 0, tzinfo=PARIS), 82_801),
        # A day that has already ended: no wait at all.
        (dt.date(2026, 11, 20), dt.datetime(2026, 11, 21, 0, 0, 30, tzinfo=PARIS), -29),
    ],
)
def test_seconds_until_day_after_counts_to_just_after_midnight_in_paris(
    day: dt.date, now: dt.datetime, seconds: int
) -> None:
    assert feed.seconds_until_day_after(day, now) == seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> asyncio.Condition:
    """Wake the waits for midnight when the test moves the clock, not when real time passes."""
    moved = asyncio.Condition()

    async def next_day(after: dt.date) -> None:
        async with moved:
            await moved.wait_for(lambda: models.project_today() > after)

    monkeypatch.setattr(feed, "next_day", next_day)
    return moved


@pytest.mark.django_db(transaction=True)
async def test_live_sources_and_data_library_are_sent_again_after_midnight(
    clock: asyncio.Condition, monkeypatch: pytest.MonkeyPatch
) -> None:
    today = models.project_today()
    await sync_to_async(services.source_create)(actor=None, **source_values(current_update=today))
    async with GraphQLWebSocket(TRANSPORT_WS) as ws:
        sources = await ws.subscribe("subscription { sources { deliveryStatus } }")
        library = await ws.subscribe("subscription { dataLibrary { sections { key counters { key count } } } }")
        first = await ws.next_data_of_each(sources, library)
        assert first[sources] == {"sources": [{"deliveryStatus": "RECEIVED"}]}
        assert first[library]["dataLibrary"]["sections"][1]["counters"][:2] == [
            {"key": "received", "count": 1},
            {"key": "awaiting", "count": 0},
        ]

        real_now = timezone.now
        monkeypatch.setattr(timezone, "now", lambda: real_now() + dt.timedelta(days=1))  # the clock passes midnight
        async with clock:
            clock.notify_all()

        results = await ws.next_data_of_each(sources, library)
        assert results[sources] == {"sources": [{"deliveryStatus": "DELAYED"}]}
        assert results[library]["dataLibrary"]["sections"][1]["counters"] == [
            {"key": "received", "count": 0},
            {"key": "awaiting", "count": 0},
            {"key": "delayed", "count": 1},
        ]
