"""The fan-out benchmark's ceiling: a bare ASGI app that sends one frame to every socket from one loop.

Serve it as `daphne benchmarks.ceiling:application`. It speaks just enough graphql-transport-ws
for the benchmark's subscribers: `connection_ack` for `connection_init`, `pong` for `ping`, and
for each `subscribe` a first `next` frame at once; no channel layer, no GraphQL, no database.
`POST /trigger` with `{"marker": ..., "size": ...}` stands in for the mutation: it answers at
once, then builds a `next` frame of `size` bytes carrying the marker and writes it to every
subscription, one after the other, from the loop that received the request. What the real
service takes beyond this app, for the same sockets and frames, is what its design costs.

It also answers `GET /readyz` and `GET /__bench/queries` (no queries, the open sockets) like
benchmarks/instrumented.py, so that the benchmark drives both the same way.
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable
from typing import Any

Send = Callable[[dict[str, Any]], Awaitable[None]]

SUBPROTOCOL = "graphql-transport-ws"
FIRST_MARKER = "open"

# The open subscriptions: (the socket's send, the subscribe id), in the order they came.
_subscriptions: dict[tuple[int, str], Send] = {}
_frame_size = 200  # the size of the first frames, until a trigger says otherwise


def frame_parts(marker: str, size: int) -> tuple[str, str]:
    """Return the text before and after the subscribe id of a `next` frame of `size` bytes (id "1")."""
    head = '{"id":"'
    tail = '","type":"next","payload":{"data":{"ceiling":{"marker":' + json.dumps(marker) + ',"pad":"'
    end = '"}}}}'
    padding = max(0, size - len(head) - 1 - len(tail) - len(end))
    return head, tail + "x" * padding + end


async def fan_out(marker: str) -> None:
    head, tail = frame_parts(marker, _frame_size)
    for (_, operation_id), send in list(_subscriptions.items()):
        await send({"type": "websocket.send", "text": head + operation_id + tail})


async def _respond(send: Send, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


async def _http(scope: dict[str, Any], receive: Callable[..., Any], send: Send) -> None:
    global _frame_size
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if scope["path"] == "/trigger" and scope["method"] == "POST":
        request = json.loads(body)
        _frame_size = int(request["size"])
        await _respond(send, 200, {"subscriptions": len(_subscriptions)})
        await fan_out(request["marker"])
    elif scope["path"] == "/__bench/queries":
        sockets = len({key for key, _ in _subscriptions})
        await _respond(send, 200, {"pid": os.getpid(), "queries": 0, "statements": {}, "websockets": sockets})
    elif scope["path"] in ("/readyz", "/healthz"):
        await _respond(send, 200, {"status": "ok"})
    else:
        await _respond(send, 404, {"error": "not found"})


async def _websocket(receive: Callable[..., Any], send: Send) -> None:
    socket = id(send)
    try:
        while True:
            message = await receive()
            if message["type"] == "websocket.connect":
                await send({"type": "websocket.accept", "subprotocol": SUBPROTOCOL})
            elif message["type"] == "websocket.disconnect":
                return
            elif message["type"] == "websocket.receive":
                frame = json.loads(message.get("text") or message.get("bytes") or "{}")
                kind = frame.get("type")
                if kind == "connection_init":
                    await send({"type": "websocket.send", "text": '{"type":"connection_ack"}'})
                elif kind == "ping":
                    await send({"type": "websocket.send", "text": '{"type":"pong"}'})
                elif kind == "subscribe":
                    head, tail = frame_parts(FIRST_MARKER, _frame_size)
                    await send({"type": "websocket.send", "text": head + frame["id"] + tail})
                    _subscriptions[(socket, frame["id"])] = send
                elif kind == "complete":
                    _subscriptions.pop((socket, frame.get("id")), None)
    finally:
        for key in [key for key in _subscriptions if key[0] == socket]:
            del _subscriptions[key]


async def application(scope: dict[str, Any], receive: Callable[..., Any], send: Send) -> None:
    if scope["type"] == "http":
        await _http(scope, receive, send)
    elif scope["type"] == "websocket":
        await _websocket(receive, send)
    elif scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
