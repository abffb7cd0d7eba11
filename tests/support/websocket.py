"""One GraphQL-over-WebSocket client for the tests, in-process or over the network, frame by frame.

Written by hand rather than using `gql`: the tests need to see (and send) the raw frames of both
subprotocols. Without an `address` the client drives the ASGI application in-process through
Channels' WebsocketCommunicator; with one, it opens a real socket to a server process through the
`websockets` library. A network client is lean: no task of its own, it reads only when asked, so
one event loop holds thousands; and importing this module needs no Django, so that client
processes without it (the fan-out benchmark's) can use it too.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any, NamedTuple, Protocol

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.support import credentials
from tests.support.credentials import ADMIN

TRANSPORT_WS = "graphql-transport-ws"
LEGACY_WS = "graphql-ws"
PROTOCOLS = (TRANSPORT_WS, LEGACY_WS)

# A guard against a hung test, never a condition a test waits for.
RECEIVE_TIMEOUT = 10
KEEP_ALIVES = frozenset({"ka", "ping", "pong"})

Headers = Sequence[tuple[bytes, bytes]]


class Close(NamedTuple):
    """How the server closed a socket; equal to the tuple (code, reason)."""

    code: int | None
    reason: str


class _Transport(Protocol):
    async def handshake(self, guard: float) -> tuple[bool, Any]: ...
    async def send(self, data: str | bytes) -> None: ...
    async def receive(self, guard: float | None) -> str | bytes | Close: ...
    async def close(self) -> None: ...


class _InProcess:
    """The ASGI application in this process, through Channels' WebsocketCommunicator."""

    def __init__(self, path: str, protocol: str | None, headers: Headers) -> None:
        # Imported here, not at the top: they set Django up, which a network client does without.
        from channels.testing import WebsocketCommunicator

        from project.asgi import application

        offered = [] if protocol is None else [protocol]
        self.communicator = WebsocketCommunicator(application, path, subprotocols=offered, headers=list(headers))

    async def handshake(self, guard: float) -> tuple[bool, Any]:
        return await self.communicator.connect(timeout=guard)

    async def send(self, data: str | bytes) -> None:
        if isinstance(data, bytes):
            await self.communicator.send_to(bytes_data=data)
        else:
            await self.communicator.send_to(text_data=data)

    async def receive(self, guard: float | None) -> str | bytes | Close:
        output = await self.communicator.receive_output(timeout=guard)
        if output["type"] == "websocket.close":
            return Close(output.get("code"), output.get("reason", ""))
        return output["text"] if output.get("text") is not None else output["bytes"]

    async def close(self) -> None:
        await self.communicator.disconnect()


class _Network:
    """A real socket to a server process, through the `websockets` library."""

    def __init__(self, address: str, path: str, protocol: str | None, headers: Headers) -> None:
        self.url = f"ws://{address}{path}"
        self.protocol = protocol
        self.headers = [(name.decode(), value.decode()) for name, value in headers]
        self.connection: ClientConnection | None = None

    async def handshake(self, guard: float) -> tuple[bool, Any]:
        try:
            self.connection = await connect(
                self.url,
                subprotocols=None if self.protocol is None else [self.protocol],
                additional_headers=self.headers,
                open_timeout=guard,
                # The server pings (daphne, every 20 s) and the library answers; pings from here
                # that a busy server answers late would close the socket in the middle of a test.
                ping_interval=None,
                # Read everything as it comes: the server's pace, not the test's, decides when
                # frames arrive, and a server held up writing to a slow reader behaves differently.
                max_queue=None,
            )
        except InvalidStatus as refused:  # refused before the upgrade: the HTTP status says so
            return False, refused.response.status_code
        return True, self.connection.subprotocol

    async def send(self, data: str | bytes) -> None:
        assert self.connection is not None, "the socket is not open"
        await self.connection.send(data)

    async def receive(self, guard: float | None) -> str | bytes | Close:
        assert self.connection is not None, "the socket is not open"
        try:
            async with asyncio.timeout(guard):
                return await self.connection.recv()
        except ConnectionClosed:
            async with asyncio.timeout(guard):
                await self.connection.wait_closed()  # the closing handshake is over: the code is final
            return Close(self.connection.close_code, self.connection.close_reason or "")

    async def close(self) -> None:
        if self.connection is not None:
            await self.connection.close()


class GraphQLWebSocket:
    """One connection to /graphql; use as `async with GraphQLWebSocket(protocol) as ws`."""

    def __init__(
        self,
        protocol: str | None,
        *,
        address: str | None = None,
        token: str | None = ADMIN,
        payload: dict[str, Any] | None = None,
        path: str = "/graphql",
        headers: Headers | None = None,
        timeout: float = RECEIVE_TIMEOUT,
    ) -> None:
        """Prepare a socket that offers the subprotocol `protocol` (None: none).

        `address`: host:port of a server process, None for the application in this process.
        `token`: a bearer token's secret, ADMIN for a new admin's, or None to send `payload` as is.
        `timeout`: the guard on each wait for the server, in seconds.
        """
        self.protocol = protocol
        self.token = token
        self.payload = payload or {}
        self.timeout = timeout
        headers = headers or ()
        self.transport: _Transport = (
            _InProcess(path, protocol, headers) if address is None else _Network(address, path, protocol, headers)
        )
        self.close_frame: Close | None = None  # how the server closed the socket, once received
        self._ids = itertools.count(1)

    async def __aenter__(self) -> GraphQLWebSocket:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def connect(self) -> None:
        """Open the socket and sign in: connection_init with the token (or the payload), then its ack."""
        payload = self.payload
        if self.token is not None:
            payload = {"authorization": f"Bearer {await credentials.secret(self.token)}", **payload}
        await self.open()
        await self.send({"type": "connection_init", "payload": payload})
        ack = await self.receive()
        assert ack == {"type": "connection_ack"}, ack

    async def handshake(self) -> tuple[bool, Any]:
        """Open the WebSocket: return (True, the chosen subprotocol) or (False, why it was refused).

        Why: the close code in-process (Channels' test client says 1000 for a refusal before the
        accept), the HTTP status over the network.
        """
        return await self.transport.handshake(self.timeout)

    async def open(self) -> None:
        """Complete the handshake with the offered subprotocol, without connection_init."""
        accepted, subprotocol = await self.handshake()
        assert accepted, f"the server refused the WebSocket: {subprotocol}"
        assert subprotocol == self.protocol

    async def close(self) -> None:
        """Close the socket from this side."""
        await self.transport.close()

    async def send(self, frame: dict[str, Any] | str | bytes) -> None:
        """Send a frame: a dict as JSON text, a str as text, bytes as a binary frame."""
        await self.transport.send(json.dumps(frame) if isinstance(frame, dict) else frame)

    async def next_message(self) -> dict[str, Any] | Close:
        """Return the next frame that is not a keep-alive, or how the server closed the socket."""
        return await self._next(self.timeout)

    async def receive(self) -> dict[str, Any]:
        """Return the next frame that is not a keep-alive."""
        message = await self.next_message()
        assert not isinstance(message, Close), f"the server closed the socket: {message}"
        return message

    async def frames(self) -> AsyncIterator[dict[str, Any]]:
        """Yield each frame that is not a keep-alive as it arrives, until the server closes the socket.

        Without a guard: a caller that waits for frames this way waits with a deadline of its own.
        """
        while not isinstance(message := await self._next(None), Close):
            yield message

    async def closed_with(self) -> Close:
        """Return the code and reason the server closed the socket with, after any frames before it."""
        message = await self.next_message()
        while not isinstance(message, Close):
            message = await self.next_message()
        return message

    async def subscribe(self, query: str, variables: dict[str, Any] | None = None) -> str:
        """Start an operation (subscribe, or start on graphql-ws); return its id."""
        operation_id = str(next(self._ids))
        start = "subscribe" if self.protocol == TRANSPORT_WS else "start"
        payload = {"query": query, "variables": variables or {}}
        await self.send({"id": operation_id, "type": start, "payload": payload})
        return operation_id

    async def next_payload(self, operation_id: str) -> dict[str, Any]:
        """Return the next result (`data` and perhaps `errors`) of one operation."""
        message = await self.receive()
        assert message["id"] == operation_id, message
        assert message["type"] == self._result_type, message
        return message["payload"]

    async def next_data(self, operation_id: str) -> dict[str, Any]:
        """Return the data of one operation's next result, which must have no errors."""
        payload = await self.next_payload(operation_id)
        assert "errors" not in payload, payload
        return payload["data"]

    async def next_data_of_each(self, *operation_ids: str) -> dict[str, dict[str, Any]]:
        """Return the next result of each operation, whatever order they arrive in."""
        results = {}
        for _ in operation_ids:
            message = await self.receive()
            assert message["type"] == self._result_type, message
            assert "errors" not in message["payload"], message
            results[message["id"]] = message["payload"]["data"]
        assert sorted(results) == sorted(operation_ids), results
        return results

    async def expect_complete(self, operation_id: str) -> None:
        """Assert that the next frame completes the operation."""
        message = await self.receive()
        assert message == {"id": operation_id, "type": "complete"}, message

    async def stop(self, operation_id: str) -> None:
        """Stop an operation (complete, or stop on graphql-ws)."""
        await self.send({"id": operation_id, "type": "complete" if self.protocol == TRANSPORT_WS else "stop"})

    @property
    def _result_type(self) -> str:
        return "next" if self.protocol == TRANSPORT_WS else "data"

    async def _next(self, guard: float | None) -> dict[str, Any] | Close:
        while self.close_frame is None:
            received = await self.transport.receive(guard)
            if isinstance(received, Close):
                self.close_frame = received
                break
            message = json.loads(received)
            if message.get("type") == "ping":  # graphql-transport-ws: answer at once
                await self.send({"type": "pong"})
            elif message.get("type") not in KEEP_ALIVES:
                return message
        return self.close_frame
