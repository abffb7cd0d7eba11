"""Fixtures shared by the tests."""

from __future__ import annotations

import json
from typing import Any

import pytest
from asgiref.sync import SyncToAsync
from django.db import connections
from django.test import AsyncClient

from tests.identities import atoken

SOURCE_FIELDS = "id country dataVendor panel panelGroup status deliveryStatus nextStatus version"


ADMIN = "admin"


async def graphql(
    query: str,
    variables: dict[str, Any] | None = None,
    *,
    token: str | None = ADMIN,
    client: AsyncClient | None = None,
    status: int = 200,
) -> dict[str, Any]:
    """POST one operation to /graphql and return the decoded response body.

    `token` is a bearer token's secret, None for none, or ADMIN (the default) for a new
    token of a new user in the admin role.
    """
    client = client or AsyncClient()
    headers = {}
    if token is not None:
        headers["Authorization"] = f"Bearer {await atoken('admin') if token == ADMIN else token}"
    response = await client.post(
        "/graphql",
        json.dumps({"query": query, "variables": variables or {}}),
        content_type="application/json",
        headers=headers,
    )
    assert response.status_code == status, response.content
    return response.json()


def source_values(**overrides: Any) -> dict[str, Any]:
    """Return the fields of a valid source for Source.objects.create or services.source_create."""
    return {
        "created_by": "tests",
        "country": "France",
        "data_vendor": "IQVIA",
        "panel": "Retail",
        "data_type": "Sales",
    } | overrides


@pytest.fixture(autouse=True, scope="session")
def _close_worker_thread_connections(django_db_setup: None, django_db_blocker: Any) -> Any:
    """Close the connection that sync_to_async's worker thread keeps, before the test database goes.

    With persistent connections (DATABASE_URL) it would otherwise block dropping the database.
    """
    yield
    with django_db_blocker.unblock():
        SyncToAsync.single_thread_executor.submit(connections.close_all).result()
