"""Fixtures shared by the tests."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import AsyncClient

from catalog.models import Source

SOURCE_FIELDS = "id country dataVendor panel panelGroup status deliveryStatus nextStatus version"


async def graphql(
    query: str, variables: dict[str, Any] | None = None, client: AsyncClient | None = None
) -> dict[str, Any]:
    """POST one operation to /graphql and return the decoded response body."""
    client = client or AsyncClient()
    response = await client.post(
        "/graphql",
        json.dumps({"query": query, "variables": variables or {}}),
        content_type="application/json",
    )
    assert response.status_code == 200, response.content
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


@pytest.fixture
def make_source(db: None):
    def make(**overrides: Any) -> Source:
        from catalog import services

        return services.source_create(actor=None, **source_values(**overrides))

    return make


@pytest.fixture
def admin_user(db: None):
    return get_user_model().objects.create_superuser("admin", "admin@example.com", "admin-password-1")
