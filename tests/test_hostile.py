"""Hostile input over HTTP and both WebSocket subprotocols: each gets its documented answer, and nothing else happens.

Every case runs while a well-behaved client is subscribed to sourceEvents. Once the hostile input has had its
answer, every source's stored values and the number of logged events are as they were, and the observer's next
message is the event of a legitimate change made afterwards: the hostile input published nothing and did not
disturb anyone else. Answers are compared whole (less error `locations`); most hostile inputs carry a mutation,
often of the watched source, so that "nothing changed" means something.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient

from accounts.tokens import token_create, token_revoke
from catalog import services
from tests.support.http import graphql
from tests.support.identities import make_user
from tests.support.listening import listening_subscriptions, until_listening
from tests.support.sources import catalog_state
from tests.support.websocket import LEGACY_WS, PROTOCOLS, TRANSPORT_WS, Close, GraphQLWebSocket

pytestmark = pytest.mark.django_db(transaction=True)

EVENTS = "subscription { sourceEvents { kind sourceId } }"
INFO = "__typename ... on OperationInfo { messages { kind field code } }"
ADD = "mutation($input: SourceInput!) { addSource(input: $input) { %s } }" % INFO
DEACTIVATE = "mutation($id: ID!) { deactivateSource(id: $id) { %s } }" % INFO
DEACTIVATE_IT = {"query": DEACTIVATE, "variables": {"id": "<source>"}}  # <source>: the watched source's id
VALID = {"country": "Spain", "dataVendor": "IQVIA", "panel": "Retail", "dataType": "Sales", "createdBy": "hostile"}
ALIASES_31 = "mutation { %s }" % " ".join(f'a{n}: deactivateSource(id: "<source>") {{ __typename }}' for n in range(31))
TOO_DEEP = 'mutation { deactivateSource(id: "<source>") { ... on Source { %s } } }' % ("a { " * 11 + "b" + " }" * 11)
TOO_MANY_TOKENS = 'mutation { deactivateSource(id: "<source>") { __typename } %s}' % ("__typename " * 2000)
TWO_OPERATIONS = DEACTIVATE + " query Q { __typename }"

SYNTAX = "Syntax Error: Expected Name, found <EOF>."
TOKENS = "Syntax Error: Document contains more than 2000 tokens. Parsing aborted."
ALIASES = "31 aliases found. Allowed: 30"
UNKNOWN_FIELD = "Cannot query field 'dropTables' on type 'Mutation'."
UNKNOWN_OPERATION = 'Unknown operation named "Nope".'
DEPTH = "'anonymous' exceeds maximum operation depth of 10"
DEPTH_ERRORS = [("invalid", DEPTH), ("invalid", "Cannot query field 'a' on type 'Source'.")]


def invalid(message: str) -> list[tuple[str, str]]:
    return [("invalid", message)]


def add(**overrides: str) -> dict[str, Any]:
    return {"query": ADD, "variables": {"input": VALID | overrides}}


def refused(field_name: str | None, code: str, kind: str = "VALIDATION", mutation: str = "addSource") -> dict:
    messages = [{"kind": kind, "field": field_name, "code": code}]
    return {"data": {mutation: {"__typename": "OperationInfo", "messages": messages}}}


def cases(*rows: Any) -> list[Any]:
    """Return pytest params: rows that start with the case's id, and params as they are."""
    return [pytest.param(*row[1:], id=row[0]) if isinstance(row[0], str) else row for row in rows]


ADD_IT = add()
PERMISSION_DENIED = refused(None, "permission_denied", "PERMISSION", "deactivateSource")


def without_locations(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: without_locations(item) for key, item in value.items() if key != "locations"}
    return [without_locations(item) for item in value] if isinstance(value, list) else value


@sync_to_async
def secret_of(kind: str) -> str:
    """Return a token secret: an admin's ("admin", "revoked", "expired") or a reader's ("reader")."""
    expires_in = dt.timedelta(seconds=-1) if kind == "expired" else None
    issued = token_create(user=make_user("reader" if kind == "reader" else "admin"), name="t", expires_in=expires_in)
    if kind == "revoked":
        token_revoke(token=issued.token)
    return issued.secret


async def fill(text: str, source_id: str, words: dict[str, str] | None = None) -> str:
    """Replace the placeholders in `text`: <source>, a subprotocol's words, and <revoked> or <expired> tokens."""
    for word, value in {"<source>": source_id, **(words or {})}.items():
        text = text.replace(word, value)
    for kind in ("revoked", "expired"):
        if f"<{kind}>" in text:
            text = text.replace(f"<{kind}>", await secret_of(kind))
    return text


@contextlib.asynccontextmanager
async def watched() -> AsyncIterator[str]:
    """Yield an existing source's id while a well-behaved client watches; then check that nothing happened."""
    source = await sync_to_async(services.source_create)(
        actor="setup", created_by="setup", country="France", data_vendor="IQVIA", panel="Retail", data_type="Sales"
    )
    source_id = str(source.pk)
    async with GraphQLWebSocket(TRANSPORT_WS) as observer:
        # Counted first: a subscription of an earlier test may not have stopped listening yet.
        already = await listening_subscriptions()
        operation = await observer.subscribe(EVENTS)
        await until_listening(already + 1)
        before = await catalog_state()
        yield source_id
        assert await catalog_state() == before
        assert (await graphql(DEACTIVATE, {"id": source_id}))["data"] == {"deactivateSource": {"__typename": "Source"}}
        event = {"sourceEvents": {"kind": "DEACTIVATED", "sourceId": source_id}}
        assert await observer.receive() == {"id": operation, "type": "next", "payload": {"data": event}}


# --- HTTP


@dataclass(frozen=True)
class Http:
    """One request: `body` is JSON text, or for GET the query string's parameters; <source> stands for the id."""

    body: Any
    method: str = "post"
    # "anonymous", "session", a token's kind (see secret_of) sent as a bearer token, or a whole Authorization header
    who: str = "admin"
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    csrf: tuple[str, str] | None = None  # a session's csrftoken cookie and X-CSRFToken header
    origin: str | None = None


def post(payload: Any, **options: Any) -> Http:
    return Http(json.dumps(payload), **options)


def unauthenticated(message: str) -> list[tuple[str, str]]:
    return [("unauthenticated", message)]


def csrf_failed(reason: str) -> list[tuple[str, str]]:
    hint = "With a session, send the csrftoken cookie's value in the X-CSRFToken header."
    return [("csrf_failed", f"CSRF check failed ({reason}). {hint}")]


CONTENT_LENGTH = "The Content-Length header is not a number."
NOT_BEARER = 'The authorization must be "Bearer <token>".'
EVIL = "https://evil.example"
GET_DEACTIVATE = Http({"query": DEACTIVATE, "variables": '{"id": "<source>"}'}, "get")
NOT_JSON = invalid("Unable to parse request body as JSON")
TOO_LARGE = [("limit_exceeded", "The request body is over 65536 bytes.")]
NOT_GET_OR_POST = invalid("GraphQL only supports GET and POST requests.")
QUERY_NOT_STRING = invalid("The GraphQL operation's `query` must be a string or null, if provided.")
VARIABLES_NOT_OBJECT = invalid("The GraphQL operation's `variables` must be an object or null, if provided.")
WRONG_ID = invalid("Variable '$id' has invalid value: ID cannot represent value: {'in': ['<source>']}")
# The GraphQL spec's GetOperation: with several operations, the request must name one.
ANONYMOUS_AMONG_OTHERS = invalid(
    "The document has 2 operations ((anonymous), Q): name the one to run in operationName."
)
NOT_JSON_BODY = "Send the operation as JSON: Content-Type: application/json."
NOT_VALID = "The API token is not valid."
REVOKED = "The API token has been revoked."
EXPIRED = "The API token has expired."
WRONG_CSRF = "CSRF token from the 'X-Csrftoken' HTTP header incorrect."
CROSS_SITE = "Origin checking failed - https://evil.example does not match any trusted origins."


def deactivate(**options: Any) -> Http:
    return post(DEACTIVATE_IT, **options)


HTTP_CASES = cases(
    ("body-not-json", Http("{nope"), 400, NOT_JSON),
    ("json-nested-100000-deep", Http("[" * 100_000), 413, TOO_LARGE),
    ("json-nested-60000-deep", Http("[" * 60_000), 400, NOT_JSON),
    ("json-array", post([DEACTIVATE_IT]), 400, invalid("Batching is not enabled")),
    ("query-not-a-string", post({"query": [DEACTIVATE]}), 400, QUERY_NOT_STRING),
    ("variables-not-an-object", post({"query": DEACTIVATE, "variables": ["<source>"]}), 400, VARIABLES_NOT_OBJECT),
    ("no-query", post({"variables": {}}), 400, invalid("No GraphQL query found in the request")),
    ("syntax-error", post({"query": "mutation { addSource("}), 200, invalid(SYNTAX)),
    ("unknown-field", post({"query": "mutation { dropTables }"}), 200, invalid(UNKNOWN_FIELD)),
    ("wrong-variable-type", post({"query": DEACTIVATE, "variables": {"id": {"in": ["<source>"]}}}), 200, WRONG_ID),
    ("over-2000-tokens", post({"query": TOO_MANY_TOKENS}), 200, invalid(TOKENS)),
    ("31-aliases", post({"query": ALIASES_31}), 200, invalid(ALIASES)),
    ("depth-over-10", post({"query": TOO_DEEP}), 200, DEPTH_ERRORS),
    ("anonymous-among-others", post({**DEACTIVATE_IT, "query": TWO_OPERATIONS}), 200, ANONYMOUS_AMONG_OTHERS),
    ("unknown-operation-name", post({**DEACTIVATE_IT, "operationName": "Nope"}), 400, invalid(UNKNOWN_OPERATION)),
    ("body-over-65536-bytes", post(add(panel="x" * 70_000)), 413, TOO_LARGE),
    ("content-length-nan", deactivate(headers={"Content-Length": "x"}), 400, invalid(CONTENT_LENGTH)),
    ("text-plain", deactivate(content_type="text/plain"), 415, invalid(NOT_JSON_BODY)),
    ("mutation-over-get", GET_DEACTIVATE, 400, invalid("mutations are not allowed when using GET")),
    ("method-put", deactivate(method="put"), 405, NOT_GET_OR_POST),
    ("method-delete", deactivate(method="delete"), 405, NOT_GET_OR_POST),
    ("token-scheme", deactivate(who="Token x"), 401, unauthenticated(NOT_BEARER)),
    ("unknown-token", deactivate(who="Bearer cat_x"), 401, unauthenticated(NOT_VALID)),
    ("revoked-token", deactivate(who="revoked"), 401, unauthenticated(REVOKED)),
    ("expired-token", deactivate(who="expired"), 401, unauthenticated(EXPIRED)),
    ("session-no-csrf", deactivate(who="session"), 403, csrf_failed("CSRF cookie not set.")),
    ("session-wrong-csrf", deactivate(who="session", csrf=("a" * 32, "b" * 32)), 403, csrf_failed(WRONG_CSRF)),
    ("session-cross-site", deactivate(who="session", csrf=("a" * 32,) * 2, origin=EVIL), 403, csrf_failed(CROSS_SITE)),
    ("anonymous-mutation", deactivate(who="anonymous"), 200, PERMISSION_DENIED),
    ("reader-mutation", deactivate(who="reader"), 200, PERMISSION_DENIED),
    ("subscription-over-http", post({"query": EVENTS}), 400, invalid("subscriptions are not allowed when using POST")),
    ("nul-character", post(add(country="Fr\u0000ance")), 200, refused("country", "invalid")),
    ("300-characters", post(add(panel="x" * 300)), 200, refused("panel", "max_length")),
)


async def send_request(case: Http, source_id: str) -> Any:
    client = AsyncClient(enforce_csrf_checks=True)
    headers = case.headers | ({"Origin": case.origin} if case.origin else {})
    if case.who == "session":
        await client.aforce_login(await sync_to_async(make_user)("admin"))
        if case.csrf is not None:
            client.cookies["csrftoken"], headers["X-CSRFToken"] = case.csrf
    elif " " in case.who:
        headers["Authorization"] = case.who
    elif case.who != "anonymous":
        headers["Authorization"] = f"Bearer {await secret_of(case.who)}"
    if case.method == "get":
        params = {name: await fill(value, source_id) for name, value in case.body.items()}
        return await client.get("/graphql", params, headers=headers)
    send = getattr(client, case.method)
    return await send("/graphql", await fill(case.body, source_id), content_type=case.content_type, headers=headers)


@pytest.mark.parametrize(("case", "status", "expected"), HTTP_CASES)
async def test_a_hostile_request_gets_its_documented_answer_and_changes_nothing(
    case: Http, status: int, expected: Any
) -> None:
    async with watched() as source_id:
        response = await send_request(case, source_id)
        body = without_locations(response.json())
        assert response.status_code == status, body
        if isinstance(expected, dict):
            assert body == expected
        else:
            assert body.get("data") is None, body
            expected = [(code, await fill(message, source_id)) for code, message in expected]
            assert [(error["extensions"]["code"], error["message"]) for error in body["errors"]] == expected
        if status == 401:
            assert response["WWW-Authenticate"] == 'Bearer error="invalid_token"'
        if status == 405:
            assert response["Allow"] == "GET, POST"
        if status != 200:
            assert "data" not in body, body  # a request error has no `data` at all


# --- WebSocket


class Error(NamedTuple):
    """An `error` frame: graphql-transport-ws lists every error, graphql-ws sends the first."""

    errors: list[tuple[str, str]]
    id: str = "1"


WORDS = {
    TRANSPORT_WS: {"<start>": "subscribe", "<stop>": "complete", "<next>": "next", "<other>": "start"},
    LEGACY_WS: {"<start>": "start", "<stop>": "stop", "<next>": "data", "<other>": "subscribe"},
}


@dataclass(frozen=True)
class Ws:
    """Frames sent (dict: as JSON, str: as text, bytes: binary) and the answer: frames, Error, perhaps a Close.

    Unless the answer ends with a Close, the socket must still run a new operation afterwards.
    """

    frames: tuple[Any, ...]
    expect: tuple[Any, ...] | dict[str, tuple[Any, ...]]  # by subprotocol when the two differ
    token: str | None = "admin"  # who signs in before `frames` (see secret_of); None: no connection_init
    init_timeout: float | None = None
    headers: tuple[tuple[bytes, bytes], ...] = ()


def start(payload: Any, id: Any = "1") -> dict[str, Any]:  # noqa: A002
    return {"type": "<start>", "id": id, "payload": payload}


def ask(document: str) -> tuple[dict[str, Any]]:
    return (start({"query": document}),)


def init(authorization: Any = None) -> dict[str, Any]:
    return {"type": "connection_init", "payload": {} if authorization is None else {"authorization": authorization}}


def bad(reason: str) -> tuple[Close]:
    return (Close(4400, reason),)


def result(payload: dict[str, Any], id: str = "1") -> tuple[dict, dict]:  # noqa: A002
    return {"id": id, "type": "<next>", "payload": payload}, {"id": id, "type": "complete"}


def errors_result(message: str) -> tuple[dict, dict]:
    return result({"data": None, "errors": [{"message": message, "extensions": {"code": "invalid"}}]})


def mutation_answer(*answer: Any) -> tuple[Any, ...]:
    """Answer to a mutation: the same over both subprotocols (graphql-ws carries queries and mutations too)."""
    return answer


def not_runnable(message: str) -> dict[str, tuple[Any, ...]]:
    """A document that cannot run: graphql-transport-ws closes with 4400, graphql-ws answers with an error."""
    return {TRANSPORT_WS: bad(message), LEGACY_WS: (Error(invalid(message)),)}


def signed_out(message: str) -> dict[str, tuple[Any, ...]]:
    """Both close with 4403 saying why; graphql-ws says it in a connection_error first too."""
    why = {"type": "connection_error", "payload": {"message": message}}
    return {TRANSPORT_WS: (Close(4403, message),), LEGACY_WS: (why, Close(4403, message))}


SUBSCRIBE, ADD_OVER_WS, OTHER_START = start({"query": EVENTS}), start(ADD_IT), {**start(ADD_IT), "type": "<other>"}
FRAME = json.dumps(ADD_OVER_WS)
NOT_JSON_WS = "A message must be JSON."
NOT_OBJECT = "A message must be a JSON object."
NOT_SIGNED_IN = (
    "Sign in first: a session cookie, or an API token in the connection_init payload as "
    '{"authorization": "Bearer <token>"}.'
)
NOT_BEARER_WS = 'The authorization must be "Bearer <token>".'
BAD_START = "The payload of <start> must be an object with a query string."
BAD_ID = "The id of <start> must be a string of 1 to 128 characters."
TOO_BIG = (Close(1009, "A message may be at most 65536 bytes."),)
MULTIBYTE = json.dumps(start(add(panel="é" * 40_000)), ensure_ascii=False)  # 40000 characters, 80000 bytes
TIMED_OUT = (Close(4408, "Connection initialisation timeout"),)
DUPLICATE = (Close(4409, "Subscriber for 1 already exists"),)
HOLD_50 = tuple(start({"query": EVENTS}, id=str(n)) for n in range(1, 51))
LIMIT = Error([("limit_exceeded", "At most 50 operations may run at once on one connection.")], id="51")
# graphql-ws acknowledges the stop of operation 1, which makes room for the probe.
OVER_THE_LIMIT = {TRANSPORT_WS: (LIMIT,), LEGACY_WS: (LIMIT, {"type": "complete", "id": "1"})}
ALIASES_IN_SUBSCRIPTION = "subscription { sourceEvents { %s } }" % " ".join(f"a{n}: kind" for n in range(31))
NOT_AN_INPUT = "Variable '$input' has invalid value: Expected value of type 'SourceInput' to be an object, found: 'x'."
NOT_IDS = 'subscription { sourceEvents(ids: ["nope"]) { kind } }'
HANDSHAKE = ((b"authorization", b"Bearer cat_x"),)
NO_TYPE = "A message must have a string type."

WS_CASES = cases(
    ("binary-frame", Ws((FRAME.encode(),), bad("Messages must be text (JSON)."))),
    ("text-not-json", Ws((FRAME[:-1],), bad(NOT_JSON_WS))),
    ("json-nested-60000-deep", Ws(("[" * 60_000,), bad(NOT_JSON_WS))),
    ("json-array", Ws((f"[{FRAME}]",), bad(NOT_OBJECT))),
    ("json-null", Ws(("null",), bad(NOT_OBJECT))),
    ("unknown-type", Ws(({"type": "mutation", "payload": ADD_IT},), bad('Unknown message type: "mutation".'))),
    ("no-type", Ws(({"id": "1", "payload": ADD_IT},), bad(NO_TYPE))),
    ("type-a-list", Ws(({"type": ["<start>"], "id": "1", "payload": ADD_IT},), bad(NO_TYPE))),
    ("type-an-object", Ws(({"type": {"<start>": 1}, "id": "1", "payload": ADD_IT},), bad(NO_TYPE))),
    ("other-subprotocols-start", Ws((OTHER_START,), bad('Unknown message type: "<other>".'))),
    ("payload-a-string", Ws((start(ADD),), bad(BAD_START))),
    ("no-payload", Ws(({"type": "<start>", "id": "1"},), bad(BAD_START))),
    ("query-not-a-string", Ws((start({"query": 1}),), bad(BAD_START))),
    ("no-query", Ws((start({"variables": {}}),), bad(BAD_START))),
    ("id-not-a-string", Ws((start(ADD_IT, id=1),), bad(BAD_ID))),
    ("id-empty", Ws((start(ADD_IT, id=""),), bad(BAD_ID))),
    ("id-of-129-characters", Ws((start(ADD_IT, id="x" * 129),), bad(BAD_ID))),
    ("stop-id-not-a-string", Ws(({"type": "<stop>", "id": ["1"]},), bad(BAD_ID.replace("<start>", "<stop>")))),
    ("variables-a-list", Ws((start(ADD_IT | {"variables": [1]}),), bad("payload.variables must be an object."))),
    (
        "operation-name-a-number",
        Ws((start(ADD_IT | {"operationName": 5}),), bad("payload.operationName must be a string.")),
    ),
    ("extensions-a-string", Ws((start(ADD_IT | {"extensions": "x"}),), bad("payload.extensions must be an object."))),
    (
        "init-payload-a-list",
        Ws((init() | {"payload": []},), bad("The payload of connection_init must be an object."), None),
    ),
    ("message-over-65536-characters", Ws((start(add(panel="x" * 70_000)),), TOO_BIG)),
    ("message-over-65536-bytes", Ws((MULTIBYTE,), TOO_BIG)),
    ("no-connection-init", Ws((), TIMED_OUT, None, init_timeout=0.2)),
    ("second-connection-init", Ws((init(), ADD_OVER_WS), (Close(4429, "Too many initialisation requests"),))),
    ("operation-before-ack", Ws((ADD_OVER_WS,), (Close(4401, "Unauthorized"),), None)),
    ("duplicate-operation-id", Ws((SUBSCRIBE, ADD_OVER_WS), DUPLICATE)),
    ("operation-over-the-limit", Ws((*HOLD_50, start(ADD_IT, id="51"), {"type": "<stop>", "id": "1"}), OVER_THE_LIMIT)),
    ("no-credentials", Ws((init(), ADD_OVER_WS), signed_out(NOT_SIGNED_IN), None)),
    ("unknown-token", Ws((init("Bearer cat_x"), ADD_OVER_WS), signed_out(NOT_VALID), None)),
    ("token-scheme", Ws((init("Token x"), ADD_OVER_WS), signed_out(NOT_BEARER_WS), None)),
    ("authorization-a-number", Ws((init(5), ADD_OVER_WS), signed_out(NOT_BEARER_WS), None)),
    ("revoked-token", Ws((init("Bearer <revoked>"), ADD_OVER_WS), signed_out(REVOKED), None)),
    ("expired-token", Ws((init("Bearer <expired>"), ADD_OVER_WS), signed_out(EXPIRED), None)),
    ("unknown-token-on-the-handshake", Ws((init(), ADD_OVER_WS), signed_out(NOT_VALID), None, headers=HANDSHAKE)),
    ("syntax-error", Ws(ask("mutation { addSource("), not_runnable(SYNTAX))),
    ("over-2000-tokens", Ws(ask(TOO_MANY_TOKENS), not_runnable(TOKENS))),
    ("31-aliases-in-a-mutation", Ws(ask(ALIASES_31), mutation_answer(Error(invalid(ALIASES))))),
    ("31-aliases-in-a-subscription", Ws(ask(ALIASES_IN_SUBSCRIPTION), (Error(invalid(ALIASES)),))),
    ("depth-over-10", Ws(ask(TOO_DEEP), mutation_answer(Error(DEPTH_ERRORS)))),
    ("unknown-field", Ws(ask("mutation { dropTables }"), mutation_answer(Error(invalid(UNKNOWN_FIELD))))),
    (
        "wrong-variable-type",
        Ws((start({"query": ADD, "variables": {"input": "x"}}),), mutation_answer(*errors_result(NOT_AN_INPUT))),
    ),
    ("argument-not-an-id", Ws(ask(NOT_IDS), errors_result("ids: 'nope' is not a source id (a UUID)."))),
    (
        "nul-character",
        Ws((start(add(country="Fr\u0000ance")),), mutation_answer(*result(refused("country", "invalid")))),
    ),
    ("300-characters", Ws((start(add(panel="x" * 300)),), mutation_answer(*result(refused("panel", "max_length"))))),
    ("reader-mutation", Ws((start(DEACTIVATE_IT),), mutation_answer(*result(PERMISSION_DENIED)), "reader")),
    (
        "unknown-operation-name",
        Ws((start(DEACTIVATE_IT | {"operationName": "Nope"}),), not_runnable(UNKNOWN_OPERATION)),
    ),
)

# After an answer that does not close the socket, the socket still runs a new operation.
PROBE = start({"query": 'subscription { source(id: "none") { version } }'}, id="probe")
PROBE_ANSWER = result({"data": {"source": None}}, id="probe")


async def answers(ws: GraphQLWebSocket, count: int) -> list[Any]:
    """Return the next `count` frames (not keep-alives), or fewer and a Close when the socket closes first."""
    received: list[Any] = []
    while len(received) < count:
        message = await ws.next_message()
        if isinstance(message, Close):
            return [*received, message]
        received.append(without_locations(message))
    return received


async def resolve(item: Any, protocol: str, source_id: str) -> Any:
    """Return the frame or Close `item` stands for on `protocol`, placeholders filled."""
    if isinstance(item, Close):
        return Close(item.code, await fill(item.reason, source_id, WORDS[protocol]))
    if isinstance(item, Error):
        payload = [{"message": message, "extensions": {"code": code}} for code, message in item.errors]
        item = {"id": item.id, "type": "error", "payload": payload if protocol == TRANSPORT_WS else payload[0]}
    return json.loads(await fill(json.dumps(item), source_id, WORDS[protocol]))


async def send_frame(ws: GraphQLWebSocket, frame: Any, protocol: str, source_id: str) -> None:
    if isinstance(frame, bytes):
        await ws.send((await fill(frame.decode(), source_id, WORDS[protocol])).encode())
    else:
        text = frame if isinstance(frame, str) else json.dumps(frame)
        await ws.send(await fill(text, source_id, WORDS[protocol]))


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("case", WS_CASES)
async def test_a_hostile_socket_gets_its_documented_answer_and_changes_nothing(
    case: Ws, protocol: str, settings: Any
) -> None:
    async with watched() as source_id:
        if case.init_timeout is not None:
            settings.GRAPHQL_CONNECTION_INIT_TIMEOUT = case.init_timeout
        token = await secret_of(case.token) if case.token else None
        ws = GraphQLWebSocket(protocol, token=token, headers=list(case.headers))
        await (ws.connect() if token else ws.open())
        try:
            for frame in case.frames:
                await send_frame(ws, frame, protocol, source_id)
            expected = case.expect[protocol] if isinstance(case.expect, dict) else case.expect
            expected = [await resolve(item, protocol, source_id) for item in expected]
            assert await answers(ws, len(expected)) == expected
            if not isinstance(expected[-1], Close):
                await ws.send(await resolve(PROBE, protocol, source_id))
                assert await answers(ws, 2) == [await resolve(item, protocol, source_id) for item in PROBE_ANSWER]
        finally:
            with contextlib.suppress(asyncio.CancelledError):
                await ws.close()


@pytest.mark.parametrize("offered", [["chat"], []], ids=["unknown-subprotocol", "no-subprotocol"])
async def test_a_socket_without_a_known_subprotocol_is_closed_with_4406(offered: list[str]) -> None:
    async with watched():
        ws = GraphQLWebSocket(offered[0] if offered else None, token=None)
        assert await ws.handshake() == (True, None)
        # The very next thing the socket says: nothing comes before the close.
        assert await ws.next_message() == Close(4406, "Subprotocol not acceptable")
        await ws.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_cross_site_handshake_with_a_session_cookie_is_refused(protocol: str) -> None:
    async with watched():
        client = AsyncClient()
        await client.aforce_login(await sync_to_async(make_user)("admin"))
        cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
        headers = [(b"origin", b"https://evil.example"), (b"host", b"testserver"), (b"cookie", cookie)]
        ws = GraphQLWebSocket(protocol, headers=headers)
        # Closed before the accept (a server answers the handshake with HTTP 403); Channels' test client says 1000.
        assert await ws.handshake() == (False, 1000)
