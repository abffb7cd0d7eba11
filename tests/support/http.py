"""GraphQL over HTTP for the tests, in-process through Django's test client."""

from __future__ import annotations

import json
from typing import Any

from django.test import AsyncClient

from tests.support import credentials
from tests.support.credentials import ADMIN


async def graphql(
    query: str,
    variables: dict[str, Any] | None = None,
    *,
    token: str | None = ADMIN,
    client: AsyncClient | None = None,
    status: int = 200,
) -> dict[str, Any]:
    """POST one operation to /graphql in this process and return the decoded response body.

    `token` is a bearer token's secret, None for none, or ADMIN (the default) for a new
    token of a new user in the admin role.
    """
    client = client or AsyncClient()
    headers = {}
    if token is not None:
        headers["Authorization"] = f"Bearer {await credentials.secret(token)}"
    response = await client.post(
        "/graphql",
        json.dumps({"query": query, "variables": variables or {}}),
        content_type="application/json",
        headers=headers,
    )
    assert response.status_code == status, response.content
    return response.json()
