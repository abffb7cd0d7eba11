"""Clients that stop reading, against a real server process: what the server holds stays bounded.

Each slow client is a real socket whose receive buffer is 8 KiB and that stops reading, so that
the TCP window fills and daphne's transport starts to buffer; WEBSOCKET_SEND_BUFFER_BYTES is
set to its minimum (64 KiB) so that a few hundred kilobytes of results pass it.
"""

from __future__ import annotations

import json
import socket
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from graph.outbox import SLOW_CLIENT_REASON
from tests.support.demo import DemoServer
from tests.support.polling import poll_until
from tests.support.processes import SCRIPTS_SERVE, manage, server_env, serving

LIMIT = 65536
# Every field of the source, under aliases: about 9 KB a result, so that a few dozen changes
# fill what the kernel and the transport hold.
FIELDS = (
    "fragment F on Source { id createdAt updatedAt createdBy country dataVendor panel panelGroup "
    "scopeOfSubscription dataType granularity endDate currentUpdate nextUpdate nextStatus deliveryStatus "
    "status version }"
)
ALIASES = " ".join(f"s{n}: source {{ ...F }}" for n in range(25))
EVENTS = "subscription Follow($after: String) { sourceEvents(after: $after) { cursor %s } } %s" % (ALIASES, FIELDS)
# Each of the 36 demo sources with 100 more copies of a field: about 200 KB a result.
WIDE = " ".join(f"c{n}: createdAt" for n in range(100))
LIST = "subscription { sources(pagination: {limit: 100}) { ...F %s } } %s" % (WIDE, FIELDS)
SCOPE_CHANGE = (
    "mutation($id: ID!, $scope: String!) { updateSource(id: $id, input: {scopeOfSubscription: $scope}) { __typename } }"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoServer]:
    folder = tmp_path_factory.mktemp("slow")
    env = server_env(
        PYTHON=sys.executable,
        SQLITE_PATH=str(folder / "db"),
        WEBSOCKET_SEND_BUFFER_BYTES=str(LIMIT),
        GRAPHQL_MAX_TOKENS="5000",
        GRAPHQL_MAX_ALIASES="200",
    )
    with serving(env, folder / "serve.log", program=SCRIPTS_SERVE) as running:
        token = manage(env | {"DJANGO_DEBUG": "1"}, "create_api_token", "demo", "--name", "slow clients")
        yield DemoServer(address=running.address, token=token, log=running.log)


@contextmanager
def open_socket(server: DemoServer, *, slow: bool) -> Iterator[ClientConnection]:
    """Open a graphql-transport-ws socket and sign in; `slow`: an 8 KiB receive buffer, one frame queued."""
    sock = socket.socket()
    if slow:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    host, port = server.address.split(":")
    sock.connect((host, int(port)))
    with connect(
        f"ws://{server.address}/graphql",
        sock=sock,
        subprotocols=["graphql-transport-ws"],
        compression=None,
        ping_interval=None,  # a client that stops reading must not close on its own
        # Once one frame waits unread, the connection stops reading from the network.
        max_queue=1 if slow else 1024,
        max_size=None,
    ) as ws:
        ws.send(json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {server.token}"}}))
        assert json.loads(ws.recv(10)) == {"type": "connection_ack"}
        yield ws


def subscribe(ws: ClientConnection, query: str, variables: dict[str, Any] | None = None) -> None:
    ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": query, "variables": variables or {}}}))


def next_result(ws: ClientConnection, timeout: float = 10) -> dict[str, Any]:
    message = json.loads(ws.recv(timeout))
    assert message["type"] == "next" and "errors" not in message["payload"], message
    return message["payload"]["data"]


def change(server: DemoServer, source_id: str, n: int | str) -> None:
    assert server.post(SCOPE_CHANGE, {"id": source_id, "scope": f"change {n}"}) == {
        "data": {"updateSource": {"__typename": "Source"}}
    }


def warm_up(server: DemoServer, ws: ClientConnection, source_id: str) -> str:
    """Change a source until the subscriber, once listening, receives it; return that change's cursor."""
    for n in range(20):
        change(server, source_id, f"warm-up {n}")
        try:
            return next_result(ws, timeout=1)["sourceEvents"]["cursor"]
        except TimeoutError:  # it did not listen yet when that change committed
            continue
    raise AssertionError("the subscriber never received a change")


def metric(server: DemoServer, name: str) -> float:
    """Return a sample of the server's /metrics (0 when absent)."""
    status, body = _metrics(server)
    assert status == 200, body
    values = [line.split()[-1] for line in body.splitlines() if line.startswith(name + " ")]
    return float(values[0]) if values else 0.0


def _metrics(server: DemoServer) -> tuple[int, str]:
    request = urllib.request.Request(
        f"http://{server.address}/metrics", headers={"Authorization": f"Bearer {server.token}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (a loopback URL)
        return response.status, response.read().decode()


def first_source(server: DemoServer) -> str:
    return server.post("{ sources(pagination: {limit: 1}) { id } }")["data"]["sources"][0]["id"]


def test_a_source_events_socket_that_stops_reading_is_closed_with_4509_and_resumes_losing_nothing(
    server: DemoServer,
) -> None:
    source_id = first_source(server)
    closes = metric(server, "catalog_slow_client_closes_total")
    with open_socket(server, slow=False) as reference, open_socket(server, slow=True) as slow:
        subscribe(reference, EVENTS)
        start = warm_up(server, reference, source_id)
        # From the reference's first change on: it misses nothing, however soon the next one.
        subscribe(slow, EVENTS, {"after": start})
        change(server, source_id, 0)
        first = next_result(reference)["sourceEvents"]
        assert next_result(slow)["sourceEvents"]["cursor"] == first["cursor"]

        # The slow client reads no more; changes go on until the server has closed it.
        sent = 1
        while metric(server, "catalog_slow_client_closes_total") == closes:
            assert sent < 400, "the slow socket was never closed"
            change(server, source_id, sent)
            sent += 1
        received = [first["cursor"]] + [next_result(reference)["sourceEvents"]["cursor"] for _ in range(sent - 1)]

        # It reads again: the results the server had sent, then the close with its code.
        cursors = [first["cursor"]]
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                cursors.append(next_result(slow)["sourceEvents"]["cursor"])
        assert closed.value.rcvd is not None, "no close frame: the server reset the connection"
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4509, SLOW_CLIENT_REASON)
        assert cursors == received[: len(cursors)] and len(cursors) < sent

    # It resumes after the last cursor it read: every change once, in order, nothing missing.
    with open_socket(server, slow=False) as resumed:
        subscribe(resumed, EVENTS, {"after": cursors[-1]})
        rest = [next_result(resumed)["sourceEvents"]["cursor"] for _ in range(sent - len(cursors))]
    assert cursors + rest == received
    assert metric(server, "catalog_slow_client_closes_total") == closes + 1


def test_a_live_list_that_stops_reading_gets_the_newest_list_once_it_reads_again(server: DemoServer) -> None:
    source_id = first_source(server)
    closes = metric(server, "catalog_slow_client_closes_total")
    with open_socket(server, slow=True) as slow:
        subscribe(slow, LIST)
        next_result(slow)
        changes = 40  # 8 MB of results: far past what the kernel and the bound hold
        for n in range(changes):
            change(server, source_id, n)
        newest = server.post("{ sources(pagination: {limit: 100}) { ...F %s } } %s" % (WIDE, FIELDS))["data"]

        results = []
        while not results or results[-1] != newest:
            results.append(next_result(slow))
        assert len(results) < changes  # intermediate lists skipped, the newest one kept
    assert metric(server, "catalog_slow_client_closes_total") == closes


@pytest.fixture(scope="module")
def pinging_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoServer]:
    """project.serve pinging every second and waiting two for the answer (daphne: 20 and 30)."""
    folder = tmp_path_factory.mktemp("pinging")
    env = server_env(SQLITE_PATH=str(folder / "db"), DJANGO_DEBUG="1")
    manage(env, "migrate", "--noinput")
    manage(env, "load_demo_data")
    manage(env, "create_demo_user")
    token = manage(env, "create_api_token", "demo", "--name", "pings")
    with serving(env, folder / "serve.log", options=["--ping-interval", "1", "--ping-timeout", "2"]) as running:
        yield DemoServer(address=running.address, token=token, log=running.log)


def test_a_client_that_stops_reading_pings_is_closed_with_4509_and_its_reason_not_reset(
    pinging_server: DemoServer,
) -> None:
    closes = metric(pinging_server, "catalog_slow_client_closes_total")
    with open_socket(pinging_server, slow=True) as stalled:
        for operation in ("1", "2"):
            payload = {"query": "subscription { dataLibrary { windowDays } }", "variables": {}}
            stalled.send(json.dumps({"id": operation, "type": "subscribe", "payload": payload}))
        # Two first results fill its queue: it reads nothing more, pings included.
        poll_until(lambda: metric(pinging_server, "catalog_slow_client_closes_total") > closes, "the close")
        for _ in ("1", "2"):
            assert next_result(stalled) == {"dataLibrary": {"windowDays": 30}}
        with pytest.raises(ConnectionClosed) as closed:
            stalled.recv(10)
    assert closed.value.rcvd is not None, "no close frame: the server reset the connection"
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4509, SLOW_CLIENT_REASON)
    assert metric(pinging_server, "catalog_slow_client_closes_total") == closes + 1
