"""The service as `make run` starts it: a real daphne process, driven over HTTP and by `gql`."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from gql import Client, gql
from gql.transport.exceptions import TransportConnectionFailed, TransportError
from gql.transport.websockets import WebsocketsTransport

from tests.support.demo import DemoServer, demo_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoServer]:
    with demo_server(tmp_path_factory.mktemp("run"), token_name="tests") as running:
        yield running


def test_the_run_command_prints_the_demo_credentials_that_sign_in(server: DemoServer) -> None:
    assert "Sign in as demo / demo" in server.log.read_text()
    request = urllib.request.Request(
        f"http://{server.address}/graphql",
        data=json.dumps(
            {"query": 'mutation { login(username: "demo", password: "demo") { ... on Viewer { username } } }'}
        ).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (our own loopback server)
        assert json.load(response) == {"data": {"login": {"username": "demo"}}}
        cookies = sorted(cookie.split("=")[0] for cookie in response.headers.get_all("Set-Cookie"))
        assert cookies == ["csrftoken", "sessionid"]


def test_the_service_answers_the_readme_query_with_the_demo_data(server: DemoServer) -> None:
    result = server.post("{ sources { id country status deliveryStatus } }")
    sources = result["data"]["sources"]
    assert len(sources) == 36
    assert {s["status"] for s in sources} == {"ACTIVE", "INACTIVE"}
    assert {s["deliveryStatus"] for s in sources} == {"RECEIVED", "AWAITING", "DELAYED", "UNKNOWN"}
    assert len({s["country"] for s in sources}) == 8


def test_the_service_serves_graphiql_to_a_browser(server: DemoServer) -> None:
    request = urllib.request.Request(f"http://{server.address}/graphql", headers={"Accept": "text/html"})
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (our own loopback server)
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/html")
        assert "graphiql" in response.read().decode().lower()


def test_the_service_serves_the_admin_with_its_static_files(server: DemoServer) -> None:
    with urllib.request.urlopen(f"http://{server.address}/static/admin/css/base.css", timeout=10) as response:
        assert response.status == 200
    with urllib.request.urlopen(f"http://{server.address}/admin/login/", timeout=10) as response:
        assert "Django administration" in response.read().decode()


def counter(data_library: dict[str, Any], key: str) -> int:
    return next(c["count"] for s in data_library["sections"] for c in s["counters"] if c["key"] == key)


def init_payload(form: str, token: str) -> dict[str, Any]:
    """Return the connection_init payload carrying `token` in one of the two accepted forms."""
    if form == "authorization":
        return {"authorization": f"Bearer {token}"}
    return {"headers": {"Authorization": f"Bearer {token}"}}


@pytest.mark.parametrize("form", ["authorization", "headers"])
@pytest.mark.parametrize(
    "subprotocol", [WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL, WebsocketsTransport.APOLLO_SUBPROTOCOL]
)
async def test_gql_signs_in_with_a_token_and_receives_the_data_library_then_its_change(
    server: DemoServer, subprotocol: str, form: str
) -> None:
    transport = WebsocketsTransport(
        url=f"ws://{server.address}/graphql", subprotocols=[subprotocol], init_payload=init_payload(form, server.token)
    )
    subscription = gql("subscription { dataLibrary { sections { counters { key count } } } }")
    async with Client(transport=transport) as session:
        updates = session.subscribe(subscription)
        first = (await anext(updates))["dataLibrary"]

        result = server.post(
            "mutation($input: SourceInput!) { addSource(input: $input) { __typename } }",
            {"input": {"country": "Spain", "dataVendor": "gql", "panel": "Retail", "dataType": "Sales"}},
        )
        assert result == {"data": {"addSource": {"__typename": "Source"}}}

        second = (await anext(updates))["dataLibrary"]
        assert counter(second, "created") == counter(first, "created") + 1
        await updates.aclose()


@pytest.mark.parametrize(
    "subprotocol", [WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL, WebsocketsTransport.APOLLO_SUBPROTOCOL]
)
async def test_gql_is_refused_with_a_token_that_is_not_valid(server: DemoServer, subprotocol: str) -> None:
    transport = WebsocketsTransport(
        url=f"ws://{server.address}/graphql",
        subprotocols=[subprotocol],
        init_payload=init_payload("authorization", "cat_not-a-token"),
    )
    with pytest.raises(TransportError) as raised:
        async with Client(transport=transport):
            pass
    if subprotocol == WebsocketsTransport.APOLLO_SUBPROTOCOL:  # the legacy protocol says why first
        assert str(raised.value) == "Server error: '{'message': 'The API token is not valid.'}'"
    else:
        # Only the code: daphne 4.2 does not pass a close reason on to the client.
        assert (type(raised.value), raised.value.__cause__.rcvd.code) == (TransportConnectionFailed, 4403)
