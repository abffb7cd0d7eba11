"""The service as `make run` starts it: a real daphne process, driven over HTTP and by `gql`."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gql import Client, gql
from gql.transport.websockets import WebsocketsTransport

ROOT = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT = 60


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start scripts/serve on a free port with a fresh SQLite file; return its base URL."""
    port = free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "REDIS_URL", "DJANGO_SECRET_KEY", "DJANGO_DEBUG"}
    }
    env |= {"PYTHON": sys.executable, "PORT": str(port), "SQLITE_PATH": str(tmp_path_factory.mktemp("run") / "db")}
    log = tmp_path_factory.mktemp("log") / "serve.log"
    with log.open("w") as output:
        process = subprocess.Popen([str(ROOT / "scripts" / "serve")], env=env, stdout=output, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:  # the server is up when its port accepts a connection
            assert process.poll() is None, f"scripts/serve exited:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"no answer on port {port}:\n{log.read_text()}"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def post(server: str, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    request = urllib.request.Request(
        f"http://{server}/graphql",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (our own loopback server)
        return json.load(response)


def test_the_service_answers_the_readme_query_with_the_demo_data(server: str) -> None:
    result = post(server, "{ sources { id country status deliveryStatus } }")
    sources = result["data"]["sources"]
    assert len(sources) == 36
    assert {s["status"] for s in sources} == {"ACTIVE", "INACTIVE"}
    assert {s["deliveryStatus"] for s in sources} == {"RECEIVED", "AWAITING", "DELAYED", "UNKNOWN"}
    assert len({s["country"] for s in sources}) == 8


def test_the_service_serves_graphiql_to_a_browser(server: str) -> None:
    request = urllib.request.Request(f"http://{server}/graphql", headers={"Accept": "text/html"})
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (our own loopback server)
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/html")
        assert "graphiql" in response.read().decode().lower()


def test_the_service_serves_the_admin_with_its_static_files(server: str) -> None:
    with urllib.request.urlopen(f"http://{server}/static/admin/css/base.css", timeout=10) as response:
        assert response.status == 200
    with urllib.request.urlopen(f"http://{server}/admin/login/", timeout=10) as response:
        assert "Django administration" in response.read().decode()


def counter(data_library: dict[str, Any], key: str) -> int:
    return next(c["count"] for s in data_library["sections"] for c in s["counters"] if c["key"] == key)


@pytest.mark.parametrize(
    "subprotocol", [WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL, WebsocketsTransport.APOLLO_SUBPROTOCOL]
)
async def test_gql_receives_the_data_library_then_its_change(server: str, subprotocol: str) -> None:
    transport = WebsocketsTransport(url=f"ws://{server}/graphql", subprotocols=[subprotocol])
    subscription = gql("subscription { dataLibrary { sections { counters { key count } } } }")
    async with Client(transport=transport) as session:
        updates = session.subscribe(subscription)
        first = (await anext(updates))["dataLibrary"]

        active = post(server, "{ sources(filters: {status: ACTIVE}, pagination: {limit: 1}) { id } }")
        source_id = active["data"]["sources"][0]["id"]
        result = post(server, "mutation($id: ID!) { deactivateSource(id: $id) { __typename } }", {"id": source_id})
        assert result == {"data": {"deactivateSource": {"__typename": "Source"}}}

        second = (await anext(updates))["dataLibrary"]
        assert counter(second, "deactivated") == counter(first, "deactivated") + 1
        await updates.aclose()
