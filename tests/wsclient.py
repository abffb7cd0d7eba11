"""A GraphQL-over-WebSocket client for the tests, speaking both subprotocols frame by frame.

Written by hand rather than using `gql`: it drives the ASGI application in-process through
Channels' WebsocketCommunicator, and the tests need to see (and send) the raw frames.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from channels.layers import InMemoryChannelLayer, get_channel_layer
from channels.testing import WebsocketCommunicator
from channels_redis.pubsub import RedisPubSubChannelLayer

from project.asgi import application
from tests.support import credentials
from tests.support.credentials import ADMIN

TRANSPORT_WS = "graphql-transport-ws"
LEGACY_WS = "graphql-ws"
PROTOCOLS = (TRANSPORT_WS, LEGACY_WS)

# A guard against a hung test, never a condition a test waits for.
RECEIVE_TIMEOUT = 10


class GraphQLWebSocket:
    """One connection to /graphql; use as `async with GraphQLWebSocket(protocol) as ws`."""

    def __init__(
        self,
        protocol: str,
        *,
        token: str | None = ADMIN,
        payload: dict[str, Any] | None = None,
        path: str = "/graphql",
        headers: list[tuple[bytes, bytes]] | None = None,
    ):
        """`token`: a bearer token's secret, ADMIN for a new admin's, or None to send `payload` as is."""
        self.protocol = protocol
        self.token = token
        self.payload = payload or {}
        self.communicator = WebsocketCommunicator(application, path, subprotocols=[protocol], headers=headers)
        self._ids = (str(n) for n in itertools.count(1))

    async def __aenter__(self) -> GraphQLWebSocket:
        payload = self.payload
        if self.token is not None:
            payload = {"authorization": f"Bearer {await credentials.secret(self.token)}", **payload}
        await self.open()
        await self.send({"type": "connection_init", "payload": payload})
        assert (await self.receive())["type"] == "connection_ack"
        return self

    async def open(self) -> None:
        """Complete the handshake, without connection_init."""
        connected, subprotocol = await self.communicator.connect(timeout=RECEIVE_TIMEOUT)
        assert connected, "the server refused the WebSocket"
        assert subprotocol == self.protocol

    async def closed_with(self) -> tuple[int, str]:
        """Return the code and reason the server closed the socket with."""
        while True:
            output = await self.communicator.receive_output(timeout=RECEIVE_TIMEOUT)
            if output["type"] == "websocket.close":
                return output.get("code"), output.get("reason", "")

    async def __aexit__(self, *exc_info: object) -> None:
        await self.communicator.disconnect()

    async def send(self, message: dict[str, Any]) -> None:
        await self.communicator.send_json_to(message)

    async def receive(self) -> dict[str, Any]:
        """Return the next frame that is not a keep-alive."""
        while True:
            message = await self.communicator.receive_json_from(timeout=RECEIVE_TIMEOUT)
            if message["type"] not in {"ka", "ping", "pong"}:
                return message

    async def subscribe(self, query: str, variables: dict[str, Any] | None = None) -> str:
        operation_id = next(self._ids)
        start = "subscribe" if self.protocol == TRANSPORT_WS else "start"
        payload = {"query": query, "variables": variables or {}}
        await self.send({"id": operation_id, "type": start, "payload": payload})
        return operation_id

    async def next_payload(self, operation_id: str) -> dict[str, Any]:
        """Return the next result (`data` and perhaps `errors`) of one operation."""
        message = await self.receive()
        result_type = "next" if self.protocol == TRANSPORT_WS else "data"
        assert message["id"] == operation_id, message
        assert message["type"] == result_type, message
        return message["payload"]

    async def next_data(self, operation_id: str) -> dict[str, Any]:
        payload = await self.next_payload(operation_id)
        assert "errors" not in payload, payload
        return payload["data"]

    async def next_data_of_each(self, *operation_ids: str) -> dict[str, dict[str, Any]]:
        """Return the next result of each operation, whatever order they arrive in."""
        results = {}
        for _ in operation_ids:
            message = await self.receive()
            assert message["type"] == ("next" if self.protocol == TRANSPORT_WS else "data"), message
            assert "errors" not in message["payload"], message
            results[message["id"]] = message["payload"]["data"]
        assert sorted(results) == sorted(operation_ids), results
        return results

    async def expect_complete(self, operation_id: str) -> None:
        message = await self.receive()
        assert message == {"id": operation_id, "type": "complete"}, message

    async def stop(self, operation_id: str) -> None:
        await self.send({"id": operation_id, "type": "complete" if self.protocol == TRANSPORT_WS else "stop"})


async def group_size(group: str) -> int:
    """Return how many channels have joined `group` on the configured channel layer."""
    layer = get_channel_layer()
    if isinstance(layer, InMemoryChannelLayer):
        return len(layer.groups.get(group, {}))
    if isinstance(layer, RedisPubSubChannelLayer):  # this process's members, all the test has
        members = layer._get_layer().groups
        return len(members.get(layer._get_layer()._get_group_channel_name(group), ()))
    connection = layer.connection(layer.consistent_hash(group))
    return await connection.zcard(layer._group_key(group))


async def until_joined(group: str, members: int = 1) -> None:
    """Wait until `members` channels listen on `group`.

    `sourceEvents` sends nothing when it starts, so a test that changes the catalog right
    after subscribing must first see the subscription's channel in the topic's group.
    """
    async with asyncio.timeout(RECEIVE_TIMEOUT):
        while await group_size(group) < members:  # noqa: ASYNC110 (no event to wait on: the layer has none)
            await asyncio.sleep(0.005)  # polling the condition above, not waiting in its place
