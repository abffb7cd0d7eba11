"""The queries: filters, pagination and ordering of `sources`, and `source`."""

from __future__ import annotations

import datetime as dt

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from catalog import services
from catalog.models import SourceStatus
from tests.support.http import graphql
from tests.support.sources import source_values

pytestmark = pytest.mark.django_db(transaction=True)


@sync_to_async
def seed() -> list[str]:
    """Create five sources, oldest first, and return their ids newest first."""
    rows = [
        ("France", "IQVIA", "DKM", SourceStatus.ACTIVE),
        ("France", "Nielsen", "GPI", SourceStatus.INACTIVE),
        ("Germany", "IQVIA", "DKM", SourceStatus.ACTIVE),
        ("Spain", "GfK", "PharmaScope", SourceStatus.INACTIVE),
        ("France", "IQVIA", "DKM", SourceStatus.INACTIVE),
    ]
    start = timezone.now() - dt.timedelta(days=5)
    ids = []
    for offset, (country, vendor, group, status) in enumerate(rows):
        source = services.source_create(
            actor=None, **source_values(country=country, data_vendor=vendor, panel_group=group, status=status)
        )
        type(source).objects.filter(pk=source.pk).update(created_at=start + dt.timedelta(days=offset))
        ids.append(str(source.pk))
    return ids[::-1]


async def ids_of(arguments: str) -> list[str]:
    result = await graphql("{ sources%s { id } }" % arguments)
    assert "errors" not in result, result
    return [s["id"] for s in result["data"]["sources"]]


async def test_sources_are_listed_newest_first_whatever_their_status() -> None:
    newest_first = await seed()
    assert await ids_of("") == newest_first


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ("{status: ACTIVE}", [2, 4]),
        ("{status: INACTIVE}", [0, 1, 3]),
        ('{country: "France"}', [0, 3, 4]),
        ('{dataVendor: "IQVIA"}', [0, 2, 4]),
        ('{panelGroup: "DKM"}', [0, 2, 4]),
        ('{country: "France", status: INACTIVE, dataVendor: "IQVIA"}', [0]),
        ('{country: "france"}', []),
    ],
)
async def test_sources_filters_match_exactly(filters: str, expected: list[int]) -> None:
    newest_first = await seed()
    assert await ids_of(f"(filters: {filters})") == [newest_first[i] for i in expected]


async def test_sources_pages_with_offset_and_limit_and_filters() -> None:
    newest_first = await seed()
    assert await ids_of("(pagination: {offset: 1, limit: 2})") == newest_first[1:3]
    assert await ids_of('(filters: {country: "France"}, pagination: {offset: 1, limit: 1})') == [newest_first[3]]
    assert await ids_of("(pagination: {offset: 10})") == []


async def test_sources_default_page_is_100_and_a_page_may_hold_1000() -> None:
    await sync_to_async(lambda: [services.source_create(actor=None, **source_values()) for _ in range(101)])()
    assert len(await ids_of("")) == 100
    assert len(await ids_of("(pagination: {limit: 1000})")) == 101


async def test_source_returns_one_source_with_computed_fields() -> None:
    today = timezone.localdate()
    source = await sync_to_async(services.source_create)(
        actor=None, **source_values(current_update=today, next_update=today + dt.timedelta(days=7))
    )
    result = await graphql(
        "query($id: ID!) { source(id: $id) { id deliveryStatus nextStatus currentUpdate version status panelGroup"
        " granularity scopeOfSubscription createdBy } }",
        {"id": str(source.pk)},
    )
    assert result == {
        "data": {
            "source": {
                "id": str(source.pk),
                "deliveryStatus": "RECEIVED",
                "nextStatus": (today + dt.timedelta(days=7)).isoformat(),
                "currentUpdate": today.isoformat(),
                "version": 1,
                "status": "ACTIVE",
                "panelGroup": "DKM",
                "granularity": "National",
                "scopeOfSubscription": "",
                "createdBy": "tests",
            }
        }
    }
