"""The shape every client frame must have, for both GraphQL WebSocket subprotocols."""

from __future__ import annotations

import json

from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL

MAX_ID_LENGTH = 128

_TYPES = {
    GRAPHQL_TRANSPORT_WS_PROTOCOL: {"connection_init", "ping", "pong", "subscribe", "complete"},
    GRAPHQL_WS_PROTOCOL: {"connection_init", "connection_terminate", "start", "stop"},
}
_WITH_ID = {"subscribe", "complete", "start", "stop"}
_WITH_OPERATION = {"subscribe", "start"}
# Optional members of an operation's payload and the JSON types they must have.
_OPTIONAL = {"variables": dict, "operationName": str, "extensions": dict}


def frame_problem(text: str, subprotocol: str | None) -> str | None:
    """Return why `text` is not a well-formed client frame of `subprotocol`, or None if it is.

    Checked before Strawberry's handlers see the frame: they assume well-typed members and
    would fail on, say, a list where the payload object belongs; the legacy one ignores what
    it cannot parse. Both subprotocols answer a malformed frame alike: close with 4400.
    """
    try:
        frame = json.loads(text)
    except (ValueError, RecursionError):
        return "A message must be JSON."
    if not isinstance(frame, dict):
        return "A message must be a JSON object."
    kind = frame.get("type")
    if not isinstance(kind, str):
        return "A message must have a string type."
    if subprotocol in _TYPES and kind not in _TYPES[subprotocol]:
        return f"Unknown message type: {json.dumps(kind)[:40]}."
    payload = frame.get("payload")
    if kind in _WITH_ID:
        operation_id = frame.get("id")
        if not isinstance(operation_id, str) or not 0 < len(operation_id) <= MAX_ID_LENGTH:
            return f"The id of {kind} must be a string of 1 to {MAX_ID_LENGTH} characters."
    if kind in _WITH_OPERATION:
        if not isinstance(payload, dict) or not isinstance(payload.get("query"), str):
            return f"The payload of {kind} must be an object with a query string."
        for name, expected in _OPTIONAL.items():
            if payload.get(name) is not None and not isinstance(payload[name], expected):
                return f"payload.{name} must be {'an object' if expected is dict else 'a string'}."
    elif payload is not None and not isinstance(payload, dict):
        return f"The payload of {kind} must be an object."
    return None
