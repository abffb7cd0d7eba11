"""To the letter of the specs: GraphQL over HTTP's media types and statuses, the GraphQL spec's operation
selection (over HTTP and both subprotocols), and the subprotocol the server prefers."""

from __future__ import annotations

import json
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from django.test import AsyncClient

from catalog.models import Source
from project.asgi import application
from tests.support import credentials
from tests.support.credentials import ADMIN
from tests.support.websocket import LEGACY_WS, PROTOCOLS, TRANSPORT_WS, GraphQLWebSocket

pytestmark = pytest.mark.django_db(transaction=True)

GRAPHQL_RESPONSE = "application/graphql-response+json; charset=utf-8"
JSON = "application/json; charset=utf-8"
ADD_AND_READ = (
    'mutation Add { addSource(input: {country: "Unnamed", dataVendor: "V", panel: "P", dataType: "T"}) '
    "{ __typename } } query Read { __typename }"
)
AMBIGUOUS = "The document has 2 operations (Add, Read): name the one to run in operationName."


async def post(body: Any, accept: str | None, token: str | None = ADMIN) -> Any:
    headers = {"Authorization": f"Bearer {await credentials.secret(token)}"} if token else {}
    if accept is not None:
        headers["Accept"] = accept
    return await AsyncClient().post("/graphql", json.dumps(body), content_type="application/json", headers=headers)


ACCEPTS = [
    # (Accept header, media type of the answer)
    (None, JSON),
    ("*/*", JSON),
    ("application/json", JSON),
    ("application/graphql-response+json", GRAPHQL_RESPONSE),
    ("application/graphql-response+json, application/json;q=0.9", GRAPHQL_RESPONSE),
    ("application/json, application/graphql-response+json;q=0.9", JSON),
]


@pytest.mark.parametrize(("accept", "media_type"), ACCEPTS)
async def test_the_answer_is_in_the_media_type_the_client_prefers(accept: str | None, media_type: str) -> None:
    response = await post({"query": "{ __typename }"}, accept)
    assert (response.status_code, response["Content-Type"], response.json()) == (
        200,
        media_type,
        {"data": {"__typename": "Query"}},
    )


REQUEST_ERRORS = {
    "syntax": {"query": "{ sources { id "},
    "validation": {"query": "{ sources { nope } }"},
    "variables": {"query": "query($id: ID!) { source(id: $id) { id } }", "variables": {"id": {"no": 1}}},
}


@pytest.mark.parametrize("kind", list(REQUEST_ERRORS))
@pytest.mark.parametrize(
    ("accept", "status"), [("application/graphql-response+json", 400), ("application/json", 200)], ids=["spec", "json"]
)
async def test_a_request_error_has_no_data_and_a_4xx_with_the_specs_media_type(
    kind: str, accept: str, status: int
) -> None:
    response = await post(REQUEST_ERRORS[kind], accept)
    body = response.json()
    assert response.status_code == status
    assert list(body) == ["errors"]
    assert [error["extensions"]["code"] for error in body["errors"]] == ["invalid"]


@pytest.mark.parametrize("accept", ["application/graphql-response+json", "application/json"])
async def test_a_field_error_is_a_200_with_data_whatever_the_media_type(accept: str) -> None:
    response = await post({"query": "{ sources { id } }"}, accept, token=None)  # nobody signed in
    body = response.json()
    assert (response.status_code, body["data"]) == (200, None)
    assert [error["extensions"]["code"] for error in body["errors"]] == ["permission_denied"]


async def test_a_client_that_accepts_neither_media_type_gets_406() -> None:
    response = await post({"query": "{ __typename }"}, "text/csv")
    assert response.status_code == 406
    assert response.json()["errors"][0]["extensions"] == {"code": "invalid"}


async def test_a_document_of_several_operations_runs_none_unless_one_is_named_over_http() -> None:
    response = await post({"query": ADD_AND_READ}, "application/graphql-response+json")
    assert (response.status_code, response.json()) == (
        400,
        {"errors": [{"message": AMBIGUOUS, "extensions": {"code": "invalid"}}]},
    )
    assert await Source.objects.acount() == 0  # the mutation did not run

    named = await post({"query": ADD_AND_READ, "operationName": "Read"}, None)
    assert named.json() == {"data": {"__typename": "Query"}}
    assert await Source.objects.acount() == 0


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_document_of_several_operations_runs_none_unless_one_is_named_over_websocket(protocol: str) -> None:
    async with GraphQLWebSocket(protocol) as ws:
        operation = await ws.subscribe(ADD_AND_READ)
        error = {"message": AMBIGUOUS, "extensions": {"code": "invalid"}}
        payload = [error] if protocol == TRANSPORT_WS else error
        assert await ws.receive() == {"id": operation, "type": "error", "payload": payload}
        assert await Source.objects.acount() == 0

        start = "subscribe" if protocol == TRANSPORT_WS else "start"
        await ws.send({"id": "named", "type": start, "payload": {"query": ADD_AND_READ, "operationName": "Read"}})
        assert await ws.next_data("named") == {"__typename": "Query"}
        await ws.expect_complete("named")
    assert await Source.objects.acount() == 0


@pytest.mark.parametrize(
    ("offered", "chosen"),
    [
        ([TRANSPORT_WS, LEGACY_WS], TRANSPORT_WS),
        ([LEGACY_WS, TRANSPORT_WS], TRANSPORT_WS),  # gql's default order
        ([LEGACY_WS], LEGACY_WS),
        ([TRANSPORT_WS], TRANSPORT_WS),
    ],
    ids=["modern-first", "legacy-first", "legacy-only", "modern-only"],
)
async def test_the_server_prefers_graphql_transport_ws_whenever_it_is_offered(offered: list[str], chosen: str) -> None:
    communicator = WebsocketCommunicator(application, "/graphql", subprotocols=offered)
    try:
        assert await communicator.connect() == (True, chosen)
    finally:
        await communicator.disconnect()
