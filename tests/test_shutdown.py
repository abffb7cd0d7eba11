"""SIGTERM: a real server process (project.serve) refuses new connections, closes its sockets with 1001, exits."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.http import get
from tests.support.polling import DEADLINE, apoll_until, poll_until
from tests.support.processes import ROOT, Server, free_port, manage, server_env, serving
from tests.support.websocket import TRANSPORT_WS, GraphQLWebSocket

GOING_AWAY = 1001
# The time a stopped reactor takes to shut down once the drain has ended.
EXIT_MARGIN = 3
# Migrate, then issue a token: one process for both (each start of manage.py takes seconds).
PREPARE = """
from django.core.management import call_command
call_command("migrate", interactive=False, verbosity=0)
from tests.support.identities import issue_token
print(issue_token("reader"))
"""


@dataclass(frozen=True)
class Database:
    env: dict[str, str]  # what a server process and manage.py need to use it
    token: str  # an API token of a user who may read the catalog


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Database:
    """Migrate a fresh SQLite file and issue a token to a reader."""
    env = server_env(DJANGO_DEBUG="1", SQLITE_PATH=str(tmp_path_factory.mktemp("shutdown") / "db"))
    env.pop("SHUTDOWN_GRACE_SECONDS", None)  # each test sets its own, or expects the default
    token = manage(env, "shell", "--no-imports", "-c", PREPARE)
    return Database(env=env, token=token)


@contextmanager
def running(database: Database, log: Path, **env: str) -> Iterator[Server]:
    """Run `python -m project.serve` as scripts/serve does, until the block ends."""
    # Sockets that never send connection_init stay open for the length of a test.
    with serving(database.env | {"GRAPHQL_CONNECTION_INIT_TIMEOUT": "300"} | env, log) as server:
        yield server


def refuses_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def shutdown_lines(server: Server) -> list[str]:
    return [line for line in server.log.read_text().splitlines() if line.startswith("Shutdown")]


async def subscribed(ws: GraphQLWebSocket) -> GraphQLWebSocket:
    """Sign `ws` in and run a subscription on it until it has sent its first result."""
    await ws.connect()
    await ws.next_payload(await ws.subscribe("subscription { dataLibrary { sections { key } } }"))
    return ws


def raw_websocket(port: int) -> socket.socket:
    """Open a WebSocket by hand: a client that reads frames but never answers them."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
    sock.sendall(
        b"GET /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n"
    )
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(4096)
    assert response.startswith(b"HTTP/1.1 101 ")
    assert response.endswith(b"\r\n\r\n")  # nothing after the handshake yet: no connection_init sent
    return sock


def receive_exactly(sock: socket.socket, size: int) -> bytes:
    received = b""
    while len(received) < size:
        chunk = sock.recv(size - len(received))
        assert chunk, f"the connection ended after {received!r}"
        received += chunk
    return received


def unfinished_request(port: int) -> socket.socket:
    """Start an HTTP request whose body never comes (an upload from a very slow client); return once accepted."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
    sock.sendall(b"POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n{")
    # The server accepts connections in the order they came: once it has answered a later one,
    # it has accepted this one, which a signal sent now must then wait for.
    assert get(f"127.0.0.1:{port}", "/healthz") == (200, {"status": "ok"})
    return sock


async def test_sigterm_closes_every_socket_with_1001_refuses_connections_and_exits_0(
    database: Database, tmp_path: Path
) -> None:
    with running(database, tmp_path / "serve.log") as server:
        sockets = [GraphQLWebSocket(TRANSPORT_WS, address=server.address, token=database.token) for _ in range(3)]
        await subscribed(sockets[0])
        await subscribed(sockets[1])
        await sockets[2].open()  # and no connection_init

        server.process.send_signal(signal.SIGTERM)
        # A subscription may still send a result before the close frame: closed_with() reads past it.
        assert [(await ws.closed_with()).code for ws in sockets] == [GOING_AWAY] * 3
        await apoll_until(lambda: refuses_connections(server.port), "connections refused")
        assert server.process.wait(timeout=10 + EXIT_MARGIN) == 0  # the default grace period
    started, ended = shutdown_lines(server)
    assert (
        started == "Shutdown on SIGTERM: refusing new connections, closing 3 WebSockets with 1001, waiting up to 10 s"
    )
    assert re.fullmatch(r"Shutdown: 3 WebSockets closed with 1001; every connection finished \(\d+\.\d s\)", ended)


def test_a_client_that_never_answers_the_close_frame_does_not_hold_the_process(
    database: Database, tmp_path: Path
) -> None:
    # autobahn drops a socket whose client does not answer our close frame within its
    # closeHandshakeTimeout (1 s, daphne keeps it): such a client cannot hold the process up.
    log = tmp_path / "serve.log"
    with running(database, log, SHUTDOWN_GRACE_SECONDS="5") as server, closing(raw_websocket(server.port)) as sock:
        server.process.send_signal(signal.SIGTERM)
        assert receive_exactly(sock, 4) == b"\x88\x02\x03\xe9"  # close frame, 1001
        assert server.process.wait(timeout=5 + EXIT_MARGIN) == 0
    started, ended = shutdown_lines(server)
    assert started == "Shutdown on SIGTERM: refusing new connections, closing 1 WebSockets with 1001, waiting up to 5 s"
    assert re.fullmatch(r"Shutdown: 1 WebSockets closed with 1001; every connection finished \(\d+\.\d s\)", ended)


def test_a_connection_that_never_finishes_holds_the_process_for_the_grace_period_only(
    database: Database, tmp_path: Path
) -> None:
    with (
        running(database, tmp_path / "serve.log", SHUTDOWN_GRACE_SECONDS="2") as server,
        closing(unfinished_request(server.port)),
        closing(raw_websocket(server.port)) as ws,
    ):
        signalled = time.monotonic()
        server.process.send_signal(signal.SIGTERM)

        poll_until(lambda: refuses_connections(server.port), "connections refused")
        assert server.process.poll() is None  # refused while it drains, not because it exited
        assert receive_exactly(ws, 4) == b"\x88\x02\x03\xe9"
        assert server.process.wait(timeout=2 + EXIT_MARGIN) == 0
        assert time.monotonic() - signalled >= 2
    assert shutdown_lines(server) == [
        "Shutdown on SIGTERM: refusing new connections, closing 1 WebSockets with 1001, waiting up to 2 s",
        "Shutdown: 1 WebSockets closed with 1001; the grace period of 2 s ran out, connections left: 1",
    ]


@pytest.mark.parametrize("second", [signal.SIGTERM, signal.SIGINT])
def test_a_second_signal_stops_at_once(database: Database, tmp_path: Path, second: signal.Signals) -> None:
    log = tmp_path / "serve.log"
    with running(database, log, SHUTDOWN_GRACE_SECONDS="300") as server, closing(unfinished_request(server.port)):
        server.process.send_signal(signal.SIGTERM)
        poll_until(lambda: len(shutdown_lines(server)) == 1, "the drain starts")

        server.process.send_signal(second)
        assert server.process.wait(timeout=EXIT_MARGIN) == 0
    assert shutdown_lines(server) == [
        "Shutdown on SIGTERM: refusing new connections, closing 0 WebSockets with 1001, waiting up to 300 s",
        f"Shutdown: {second.name} again, stopping now",
    ]


@pytest.mark.parametrize("value", ["soon", "-1", "inf", "nan"])
def test_a_bad_grace_period_stops_the_start_with_a_message(value: str) -> None:
    started = subprocess.run(
        [sys.executable, "-m", "project.serve", "-p", str(free_port()), "project.asgi:application"],
        env=server_env(DJANGO_DEBUG="1", SHUTDOWN_GRACE_SECONDS=value),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
    )
    assert (started.returncode, started.stderr) == (
        1,
        f"SHUTDOWN_GRACE_SECONDS must be a number of seconds, 0 or more, not {value!r}.\n",
    )
