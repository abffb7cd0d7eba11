"""GraphQL over HTTP for the tests: in-process through Django's test client, or to a server process."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from django.test import AsyncClient

from tests.support import credentials
from tests.support.credentials import ADMIN
from tests.support.polling import DEADLINE


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


def post_graphql(
    address: str, query: str, variables: dict[str, Any] | None = None, *, token: str | None = None
) -> tuple[int, Any]:
    """POST one operation to the server at `address` (host:port), as an integrator would.

    Return the status and the body: decoded from JSON if it is JSON, else the text.
    """
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    return _answer(urllib.request.Request(f"http://{address}/graphql", data=body, headers=headers))


def get(address: str, path: str) -> tuple[int, Any]:
    """GET `path` from the server at `address`; return the status and the body (decoded from JSON if it is)."""
    return _answer(urllib.request.Request(f"http://{address}{path}"))


def _answer(request: urllib.request.Request) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(request, timeout=DEADLINE) as response:  # noqa: S310 (our own loopback server)
            status, body = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, body = error.code, error.read()
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body.decode()
