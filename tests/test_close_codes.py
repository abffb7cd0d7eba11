"""Every close code the README lists, with its reason, as a real daphne process sends it, over both subprotocols.

daphne and the in-process test client differ: daphne 4.2.3 dropped close reasons, failed the
application with 1011 instead of sending 1009, and reset the connection on a 4 MiB message
(project/wsprotocol.py). 4509 and 1001 have tests of their own (test_slow_clients, test_shutdown).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from tests.support.demo import DemoServer
from tests.support.processes import SCRIPTS_SERVE, manage, server_env, serving
from tests.support.websocket import LEGACY_WS, PROTOCOLS, TRANSPORT_WS, Close, GraphQLWebSocket

LIMIT = 65536
AUTOBAHN_LIMIT = 4 * LIMIT  # project.serve's MESSAGE_LIMIT_FACTOR


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoServer]:
    folder = tmp_path_factory.mktemp("close-codes")
    env = server_env(PYTHON=sys.executable, SQLITE_PATH=str(folder / "db"), GRAPHQL_CONNECTION_INIT_TIMEOUT="1")
    with serving(env, folder / "serve.log", program=SCRIPTS_SERVE) as running:
        token = manage(env | {"DJANGO_DEBUG": "1"}, "create_api_token", "demo", "--name", "close codes")
        yield DemoServer(address=running.address, token=token, log=running.log)


def socket(server: DemoServer, protocol: str | None, token: str | None = None) -> GraphQLWebSocket:
    return GraphQLWebSocket(protocol, address=server.address, token=token)


def start(protocol: str, operation_id: str = "1") -> dict:
    kind = "subscribe" if protocol == TRANSPORT_WS else "start"
    return {"id": operation_id, "type": kind, "payload": {"query": "subscription { dataLibrary { windowDays } }"}}


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_4400_a_malformed_message(server: DemoServer, protocol: str) -> None:
    async with socket(server, protocol, server.token) as ws:
        await ws.send("not json")
        assert await ws.closed_with() == Close(4400, "A message must be JSON.")


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_4401_an_operation_before_the_acknowledgement(server: DemoServer, protocol: str) -> None:
    ws = socket(server, protocol)
    await ws.open()
    await ws.send(start(protocol))
    assert await ws.closed_with() == Close(4401, "Unauthorized")
    await ws.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (
            {},
            "Sign in first: a session cookie, or an API token in the connection_init payload as "
            '{"authorization": "Bearer <token>"}.',
        ),
        ({"authorization": "Bearer cat_not-a-token"}, "The API token is not valid."),
    ],
    ids=["no-credentials", "unknown-token"],
)
async def test_4403_says_why(server: DemoServer, protocol: str, payload: dict, reason: str) -> None:
    ws = socket(server, protocol)
    await ws.open()
    await ws.send({"type": "connection_init", "payload": payload})
    if protocol == LEGACY_WS:
        assert await ws.receive() == {"type": "connection_error", "payload": {"message": reason}}
    assert await ws.closed_with() == Close(4403, reason)
    await ws.close()


async def test_4406_an_unknown_subprotocol(server: DemoServer) -> None:
    ws = socket(server, "chat")
    assert await ws.handshake() == (True, None)
    assert await ws.next_message() == Close(4406, "Subprotocol not acceptable")
    await ws.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_4408_no_connection_init_in_time(server: DemoServer, protocol: str) -> None:
    ws = socket(server, protocol)
    await ws.open()
    assert await ws.closed_with() == Close(4408, "Connection initialisation timeout")  # within 1 s here
    await ws.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_4409_an_operation_id_already_running(server: DemoServer, protocol: str) -> None:
    async with socket(server, protocol, server.token) as ws:
        await ws.send(start(protocol))
        await ws.next_data("1")
        await ws.send(start(protocol))
        assert await ws.closed_with() == Close(4409, "Subscriber for 1 already exists")


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_4429_a_second_connection_init(server: DemoServer, protocol: str) -> None:
    async with socket(server, protocol, server.token) as ws:
        await ws.send({"type": "connection_init", "payload": {}})
        assert await ws.closed_with() == Close(4429, "Too many initialisation requests")


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_1009_a_message_over_the_limit(server: DemoServer, protocol: str) -> None:
    async with socket(server, protocol, server.token) as ws:
        await ws.send("x" * (LIMIT + 1))
        assert await ws.closed_with() == Close(1009, f"A message may be at most {LIMIT} bytes.")


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_1009_a_message_far_over_the_limit_is_refused_before_it_is_read_whole(
    server: DemoServer, protocol: str
) -> None:
    async with socket(server, protocol, server.token) as ws:
        await ws.send("x" * (4 * 1024 * 1024))
        closed = await ws.closed_with()
    # autobahn's own refusal, with its close frame: no reset.
    assert closed.code == 1009
    assert str(AUTOBAHN_LIMIT) in closed.reason, closed
