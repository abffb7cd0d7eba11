"""Each way in (session, API token; HTTP, both WebSocket subprotocols) and each way refused."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient

from accounts.models import ApiToken
from accounts.tokens import bearer_authenticate, token_create, token_revoke
from catalog import services
from catalog.models import Source, SourceEvent
from graph.access import access_watch
from tests.support.http import graphql
from tests.support.identities import PASSWORD, issue_token, make_user
from tests.support.websocket import LEGACY_WS, PROTOCOLS, RECEIVE_TIMEOUT, TRANSPORT_WS, GraphQLWebSocket

pytestmark = pytest.mark.django_db(transaction=True)

VIEWER = "{ viewer { username permissions } }"
LOGIN = (
    "mutation($u: String!, $p: String!) { login(username: $u, password: $p) {"
    " __typename ... on Viewer { username } ... on OperationInfo { messages { kind code message } } } }"
)
DATA_LIBRARY = "subscription { dataLibrary { windowDays } }"
READER_PERMISSIONS = ["catalog.view_source", "catalog.view_sourceevent"]


async def post(client: AsyncClient, query: str, variables: dict[str, Any] | None = None, **headers: str) -> Any:
    """POST one operation with `client`; `headers` by name, underscores for dashes (X_CSRFToken=...)."""
    return await client.post(
        "/graphql",
        json.dumps({"query": query, "variables": variables or {}}),
        content_type="application/json",
        headers={name.replace("_", "-"): value for name, value in headers.items()},
    )


def unauthenticated(message: str) -> dict[str, Any]:
    return {"errors": [{"message": message, "extensions": {"code": "unauthenticated"}}]}


async def signed_in_client(role: str = "reader") -> tuple[AsyncClient, Any]:
    """Return a client that has signed in through the login mutation, and its user."""
    user = await sync_to_async(make_user)(role, password=PASSWORD)
    client = AsyncClient(enforce_csrf_checks=True)
    response = await post(client, LOGIN, {"u": user.username, "p": PASSWORD})
    assert response.json() == {"data": {"login": {"__typename": "Viewer", "username": user.username}}}
    return client, user


# --- Sessions over HTTP


async def test_login_sets_a_session_that_signs_in_later_requests_carrying_the_csrf_token() -> None:
    client, user = await signed_in_client()
    csrf = client.cookies["csrftoken"].value
    response = await post(client, VIEWER, X_CSRFToken=csrf)
    assert response.json() == {"data": {"viewer": {"username": user.username, "permissions": READER_PERMISSIONS}}}


async def test_a_session_post_without_the_csrf_token_is_refused_with_403() -> None:
    client, _ = await signed_in_client()
    response = await post(client, VIEWER)
    assert response.status_code == 403
    assert response.json()["errors"][0]["extensions"] == {"code": "csrf_failed"}
    assert response.json()["errors"][0]["message"].startswith("CSRF check failed (CSRF token missing.)")


async def test_a_session_get_query_needs_no_csrf_token() -> None:
    client, user = await signed_in_client()
    response = await client.get("/graphql", {"query": VIEWER})
    assert response.json()["data"]["viewer"]["username"] == user.username


async def test_a_wrong_password_is_invalid_credentials_and_sets_no_session() -> None:
    await sync_to_async(make_user)("reader", "someone", password=PASSWORD)
    client = AsyncClient(enforce_csrf_checks=True)
    response = await post(client, LOGIN, {"u": "someone", "p": "wrong"})
    assert response.json() == {
        "data": {
            "login": {
                "__typename": "OperationInfo",
                "messages": [
                    {
                        "kind": "VALIDATION",
                        "code": "invalid_credentials",
                        "message": "Wrong username or password, or the account is inactive.",
                    }
                ],
            }
        }
    }
    assert "sessionid" not in client.cookies


async def test_logout_ends_the_session() -> None:
    client, _ = await signed_in_client()
    csrf = client.cookies["csrftoken"].value
    assert (await post(client, "mutation { logout }", X_CSRFToken=csrf)).json() == {"data": {"logout": True}}
    assert (await post(client, VIEWER)).json() == {"data": {"viewer": None}}


# --- API tokens over HTTP


async def test_a_bearer_token_signs_in_without_a_csrf_token() -> None:
    secret = await sync_to_async(issue_token)("reader", username="integrator")
    client = AsyncClient(enforce_csrf_checks=True)
    response = await post(client, VIEWER, Authorization=f"Bearer {secret}")
    assert response.json() == {"data": {"viewer": {"username": "integrator", "permissions": READER_PERMISSIONS}}}


def _expired() -> str:
    return token_create(user=make_user("reader"), name="t", expires_in=dt.timedelta(seconds=-1)).secret


def _revoked() -> str:
    issued = token_create(user=make_user("reader"), name="t")
    token_revoke(token=issued.token)
    return issued.secret


def _of_an_inactive_user() -> str:
    issued = token_create(user=make_user("reader"), name="t")
    issued.token.user.is_active = False
    issued.token.user.save()
    return issued.secret


BAD_BEARERS = [
    pytest.param(lambda: "Token abc", 'The authorization must be "Bearer <token>".', id="other-scheme"),
    pytest.param(lambda: "Bearer", 'The authorization must be "Bearer <token>".', id="no-token"),
    pytest.param(lambda: "Bearer cat_unknown", "The API token is not valid.", id="unknown"),
    pytest.param(lambda: "Bearer " + "x" * 5000, "The API token is not valid.", id="huge"),
    pytest.param(lambda: f"Bearer {_expired()}", "The API token has expired.", id="expired"),
    pytest.param(lambda: f"Bearer {_revoked()}", "The API token has been revoked.", id="revoked"),
    pytest.param(lambda: f"Bearer {_of_an_inactive_user()}", "The API token's user is inactive.", id="inactive-user"),
]


@pytest.mark.parametrize(("authorization", "message"), BAD_BEARERS)
async def test_a_bad_bearer_token_is_refused_with_401(authorization: Any, message: str) -> None:
    header = await sync_to_async(authorization)()
    response = await post(AsyncClient(), VIEWER, Authorization=header)
    assert (response.status_code, response.json()) == (401, unauthenticated(message))
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


async def test_only_a_digest_of_the_token_is_stored() -> None:
    secret = await sync_to_async(issue_token)("reader")
    stored = await ApiToken.objects.values_list("prefix", "digest").aget()
    assert secret not in stored
    assert secret.startswith(stored[0])
    assert len(stored[1]) == 64


# --- Over WebSocket


async def session_cookie(role: str = "reader") -> tuple[list[tuple[bytes, bytes]], Any]:
    client, user = await signed_in_client(role)
    return [(b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())], user


async def first_result(ws: GraphQLWebSocket) -> dict[str, Any]:
    return await ws.next_data(await ws.subscribe(DATA_LIBRARY))


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_session_cookie_signs_the_socket_in(protocol: str) -> None:
    headers, _ = await session_cookie()
    async with GraphQLWebSocket(protocol, token=None, headers=headers) as ws:
        assert await first_result(ws) == {"dataLibrary": {"windowDays": 30}}


def token_payload(form: str, secret: str) -> tuple[dict[str, Any], list[tuple[bytes, bytes]]]:
    """Return the connection_init payload and handshake headers that carry `secret` in `form`."""
    if form == "authorization":
        return {"authorization": f"Bearer {secret}"}, []
    if form == "headers":
        return {"headers": {"Authorization": f"Bearer {secret}"}}, []
    return {}, [(b"authorization", f"Bearer {secret}".encode())]  # on the handshake itself


@pytest.mark.parametrize("form", ["authorization", "headers", "handshake"])
@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_token_signs_the_socket_in(protocol: str, form: str) -> None:
    secret = await sync_to_async(issue_token)("reader")
    payload, headers = token_payload(form, secret)
    async with GraphQLWebSocket(protocol, token=None, payload=payload, headers=headers) as ws:
        assert await first_result(ws) == {"dataLibrary": {"windowDays": 30}}


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_null_connection_init_payload_is_an_empty_one(protocol: str) -> None:
    secret = await sync_to_async(issue_token)("reader")
    ws = GraphQLWebSocket(protocol, token=None, headers=[(b"authorization", f"Bearer {secret}".encode())])
    await ws.open()
    await ws.send({"type": "connection_init", "payload": None})
    assert await ws.receive() == {"type": "connection_ack"}
    await ws.close()


async def refused(protocol: str, payload: dict[str, Any], message: str, headers: Any = None) -> None:
    """Assert that connection_init with `payload` is refused: 4403, and why (legacy: connection_error)."""
    ws = GraphQLWebSocket(protocol, token=None, headers=headers)
    await ws.open()
    await ws.send({"type": "connection_init", "payload": payload})
    if protocol == LEGACY_WS:
        assert await ws.receive() == {"type": "connection_error", "payload": {"message": message}}
    assert await ws.closed_with() == (4403, message)  # why, not only "Forbidden"
    await ws.close()


NOT_SIGNED_IN = (
    "Sign in first: a session cookie, or an API token in the connection_init payload as "
    '{"authorization": "Bearer <token>"}.'
)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_socket_without_credentials_is_closed_with_4403(protocol: str) -> None:
    await refused(protocol, {}, NOT_SIGNED_IN)


@pytest.mark.parametrize(("authorization", "message"), BAD_BEARERS)
@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_socket_with_a_bad_token_is_closed_with_4403(protocol: str, authorization: Any, message: str) -> None:
    header = await sync_to_async(authorization)()
    await refused(protocol, {"authorization": header}, message)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_bad_token_is_refused_even_with_a_valid_session(protocol: str) -> None:
    headers, _ = await session_cookie()
    await refused(protocol, {"authorization": "Bearer cat_unknown"}, "The API token is not valid.", headers)


# --- Credentials that stop working while the socket is open


async def open_with_token(protocol: str, secret: str) -> GraphQLWebSocket:
    ws = GraphQLWebSocket(protocol, token=secret)
    await ws.connect()
    assert await first_result(ws) == {"dataLibrary": {"windowDays": 30}}
    return ws


@pytest.mark.parametrize(
    ("end", "reason"),
    [
        pytest.param(
            sync_to_async(lambda token: token_revoke(token=token)), "The API token has been revoked.", id="revoked"
        ),
        pytest.param(lambda token: token.adelete(), "The API token is not valid.", id="deleted"),
    ],
)
@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_ending_the_token_closes_its_open_socket_with_4403(protocol: str, end: Any, reason: str) -> None:
    issued = await sync_to_async(token_create)(user=await sync_to_async(make_user)("reader"), name="t")
    ws = await open_with_token(protocol, issued.secret)
    await end(issued.token)
    assert await ws.closed_with() == (4403, reason)
    await ws.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_deactivating_the_user_closes_their_open_socket_with_4403(protocol: str) -> None:
    issued = await sync_to_async(token_create)(user=await sync_to_async(make_user)("reader"), name="t")
    ws = await open_with_token(protocol, issued.secret)
    user = issued.token.user
    user.is_active = False
    await user.asave()
    assert await ws.closed_with() == (4403, "The API token's user is inactive.")
    await ws.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_token_expiring_closes_its_open_socket_with_4403(protocol: str) -> None:
    user = await sync_to_async(make_user)("reader")
    issued = await sync_to_async(token_create)(user=user, name="t", expires_in=dt.timedelta(seconds=1))
    ws = await open_with_token(protocol, issued.secret)
    assert await ws.closed_with() == (4403, "The API token has expired.")
    assert await ApiToken.objects.filter(pk=issued.token.pk, expires_at__lte=dt.datetime.now(dt.UTC)).aexists()
    await ws.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_signing_out_closes_the_sockets_of_that_session_with_4403(protocol: str) -> None:
    client, _ = await signed_in_client()
    headers = [(b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())]
    async with GraphQLWebSocket(protocol, token=None, headers=headers) as ws:
        assert await first_result(ws) == {"dataLibrary": {"windowDays": 30}}
        response = await post(client, "mutation { logout }", X_CSRFToken=client.cookies["csrftoken"].value)
        assert response.json() == {"data": {"logout": True}}
        assert await ws.closed_with() == (4403, "The session has ended.")


# --- Origins


def origin_headers(origin: str, cookie: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    return [(b"host", b"testserver"), (b"origin", origin.encode()), *cookie]


async def test_a_cross_site_page_cannot_open_a_socket_with_the_users_cookie() -> None:
    headers, _ = await session_cookie()
    ws = GraphQLWebSocket(TRANSPORT_WS, token=None, headers=origin_headers("https://evil.example", headers))
    connected, _ = await ws.handshake()
    assert connected is False


@pytest.mark.parametrize("origin", ["http://testserver", "https://app.example.com"])
async def test_the_same_origin_and_allowed_origins_may_open_a_socket(origin: str) -> None:
    headers, _ = await session_cookie()
    async with GraphQLWebSocket(TRANSPORT_WS, token=None, headers=origin_headers(origin, headers)) as ws:
        assert await first_result(ws) == {"dataLibrary": {"windowDays": 30}}


# --- Who made the change


ADD = "mutation($input: SourceInput!) { addSource(input: $input) { ... on Source { id createdBy } } }"
NEW_SOURCE = {"country": "France", "dataVendor": "IQVIA", "panel": "Retail", "dataType": "Sales"}


async def test_created_by_defaults_to_the_signed_in_user_and_the_actor_is_always_them() -> None:
    secret = await sync_to_async(issue_token)("editor", username="ed")
    named = await graphql(ADD, {"input": NEW_SOURCE | {"createdBy": "someone else"}}, token=secret)
    defaulted = await graphql(ADD, {"input": NEW_SOURCE}, token=secret)
    named, defaulted = named["data"]["addSource"], defaulted["data"]["addSource"]
    assert (named["createdBy"], defaulted["createdBy"]) == ("someone else", "ed")
    actors = [actor async for actor in SourceEvent.objects.order_by("id").values_list("actor", flat=True)]
    assert actors == ["ed", "ed"]


@pytest.mark.parametrize("protocol", [TRANSPORT_WS])
async def test_a_mutation_over_a_session_socket_is_made_by_the_sessions_user(protocol: str) -> None:
    headers, user = await session_cookie("editor")
    async with GraphQLWebSocket(protocol, token=None, headers=headers) as ws:
        operation = await ws.subscribe(ADD, {"input": NEW_SOURCE})
        assert (await ws.next_data(operation))["addSource"]["createdBy"] == user.username
    assert await SourceEvent.objects.values_list("actor", flat=True).aget() == user.username


# --- What the socket keeps checking


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_revocation_between_sign_in_and_listening_is_not_missed(
    protocol: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from graph import signin

    def authenticate_then_revoke(authorization: object) -> ApiToken:
        token = bearer_authenticate(authorization)
        token_revoke(token=token)  # committed before the socket has joined its token's topic
        return token

    monkeypatch.setattr(signin, "bearer_authenticate", authenticate_then_revoke)
    secret = await sync_to_async(issue_token)("reader")
    await refused(protocol, {"authorization": f"Bearer {secret}"}, "The API token has been revoked.")


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_closed_socket_leaves_the_access_watch(protocol: str) -> None:
    issued = await sync_to_async(token_create)(user=await sync_to_async(make_user)("reader"), name="t")
    async with GraphQLWebSocket(protocol, token=issued.secret):
        assert access_watch().watched() == 1
    assert access_watch().watched() == 0


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_password_change_closes_the_sockets_of_the_users_sessions(protocol: str) -> None:
    headers, user = await session_cookie()
    async with GraphQLWebSocket(protocol, token=None, headers=headers) as ws:
        assert await first_result(ws) == {"dataLibrary": {"windowDays": 30}}
        user.set_password("another password entirely")
        await user.asave()
        assert await ws.closed_with() == (4403, "The session has ended.")


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_losing_the_view_permission_closes_the_socket_with_4403(protocol: str) -> None:
    issued = await sync_to_async(token_create)(user=await sync_to_async(make_user)("reader"), name="t")
    ws = await open_with_token(protocol, issued.secret)
    await sync_to_async(issued.token.user.groups.clear)()
    assert await ws.closed_with() == (4403, "Missing permission catalog.view_source.")
    await ws.close()


async def test_a_demoted_superuser_loses_the_permission_for_the_next_operation_on_the_same_socket() -> None:
    user = await sync_to_async(make_user)("editor")
    user.is_superuser = True
    await user.asave()
    issued = await sync_to_async(token_create)(user=user, name="t")
    source = await sync_to_async(services.source_create)(
        actor="setup", created_by="setup", country="France", data_vendor="V", panel="P", data_type="D"
    )
    delete = "mutation($id: ID!) { deleteSource(id: $id) { __typename ... on OperationInfo { messages { code } } } }"
    async with GraphQLWebSocket(TRANSPORT_WS, token=issued.secret) as ws:
        user.is_superuser = False
        await user.asave()
        operation = await ws.subscribe(delete, {"id": str(source.pk)})
        assert await ws.next_data(operation) == {
            "deleteSource": {"__typename": "OperationInfo", "messages": [{"code": "permission_denied"}]}
        }
    assert await Source.objects.filter(pk=source.pk).aexists()


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_revocation_that_announces_nothing_is_caught_by_the_sockets_own_check(
    protocol: str, settings: Any
) -> None:
    settings.ACCESS_RECHECK_SECONDS = 0.2
    issued = await sync_to_async(token_create)(user=await sync_to_async(make_user)("reader"), name="t")
    ws = await open_with_token(protocol, issued.secret)
    # A queryset update sends no signal, so nothing tells the socket.
    await ApiToken.objects.filter(pk=issued.token.pk).aupdate(revoked_at=dt.datetime.now(dt.UTC))
    assert await ws.closed_with() == (4403, "The API token has been revoked.")
    await ws.close()


async def test_a_check_that_cannot_reach_the_database_keeps_the_socket_serving(monkeypatch: pytest.MonkeyPatch) -> None:
    from django.db import OperationalError

    from graph.websocket import GraphQLConsumer

    issued = await sync_to_async(token_create)(user=await sync_to_async(make_user)("reader"), name="t")
    ws = await open_with_token(TRANSPORT_WS, issued.secret)
    checked = asyncio.Event()

    async def unreachable(self: GraphQLConsumer, ended_session: str | None = None) -> str | None:
        checked.set()
        raise OperationalError("the database is away")

    monkeypatch.setattr(GraphQLConsumer, "_access_problem", unreachable)
    user = issued.token.user
    user.first_name = "Changed"
    await user.asave()  # announces a change: the socket checks again, and cannot
    await asyncio.wait_for(checked.wait(), RECEIVE_TIMEOUT)
    assert await first_result(ws) == {"dataLibrary": {"windowDays": 30}}
    await ws.close()
