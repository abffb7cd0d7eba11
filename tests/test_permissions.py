"""The permission matrix: every operation, for each of anonymous, reader, editor and admin."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async

from catalog import services
from catalog.models import SourceStatus
from tests.support.http import graphql
from tests.support.identities import issue_token
from tests.support.listening import until_listening
from tests.support.sources import catalog_state
from tests.support.websocket import PROTOCOLS, GraphQLWebSocket

pytestmark = pytest.mark.django_db(transaction=True)

ROLES = ["anonymous", "reader", "editor", "admin"]
OUTCOME = "__typename ... on OperationInfo { messages { kind field code message } }"

# operation name -> (document, the permission it needs)
QUERIES = {
    "source": ("query($id: ID!) { source(id: $id) { id } }", "catalog.view_source"),
    "sources": ("{ sources { id } }", "catalog.view_source"),
    "dataLibrary": ("{ dataLibrary { windowDays } }", "catalog.view_source"),
}
MUTATIONS = {
    "addSource": (
        'mutation { addSource(input: {country: "Italy", dataVendor: "V", panel: "P", dataType: "D"}) { %s } }',
        "catalog.add_source",
    ),
    "updateSource": (
        'mutation($id: ID!) { updateSource(id: $id, input: {panel: "Q"}) { %s } }',
        "catalog.change_source",
    ),
    "activateSource": ("mutation($id: ID!) { activateSource(id: $id) { %s } }", "catalog.change_source"),
    "deactivateSource": ("mutation($id: ID!) { deactivateSource(id: $id) { %s } }", "catalog.change_source"),
    "reactivateSource": ("mutation($id: ID!) { reactivateSource(id: $id) { %s } }", "catalog.change_source"),
    "deleteSource": ("mutation($id: ID!) { deleteSource(id: $id) { %s } }", "catalog.delete_source"),
}
SUBSCRIPTIONS = {
    "sourceEvents": "subscription { sourceEvents { kind } }",
    "sources": "subscription { sources { id } }",
    "source": "subscription($id: ID!) { source(id: $id) { id } }",
    "dataLibrary": "subscription { dataLibrary { windowDays } }",
}
# What each role may do, by permission.
GRANTED = {
    "anonymous": set(),
    "reader": {"catalog.view_source"},
    "editor": {"catalog.view_source", "catalog.add_source", "catalog.change_source"},
    "admin": {"catalog.view_source", "catalog.add_source", "catalog.change_source", "catalog.delete_source"},
}
# The state each mutation needs its source in, to succeed when permitted.
SOURCE_STATUS = {"activateSource": "never-active", "reactivateSource": "deactivated"}


@sync_to_async
def source_for(operation: str) -> str:
    values = {"actor": "setup", "created_by": "setup", "country": "France", "data_vendor": "V", "panel": "P"}
    state = SOURCE_STATUS.get(operation)
    source = services.source_create(
        **values, data_type="D", status=SourceStatus.INACTIVE if state == "never-active" else SourceStatus.ACTIVE
    )
    if state == "deactivated":
        services.source_deactivate(actor="setup", source_id=source.pk)
    return str(source.pk)


async def token_of(role: str) -> str | None:
    return None if role == "anonymous" else await sync_to_async(issue_token)(role)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("operation", QUERIES)
async def test_query(operation: str, role: str) -> None:
    document, permission = QUERIES[operation]
    result = await graphql(document, {"id": await source_for(operation)}, token=await token_of(role))
    if permission in GRANTED[role]:
        assert "errors" not in result, result
        assert result["data"][operation] is not None
    else:
        # No data: a nullable field (source) is null, a non-null one nulls the whole result.
        assert result["data"] == ({"source": None} if operation == "source" else None)
        assert [(e["message"], e["extensions"]) for e in result["errors"]] == [
            (f"Missing permission {permission}.", {"code": "permission_denied", "permission": permission})
        ]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("operation", MUTATIONS)
async def test_mutation(operation: str, role: str) -> None:
    document, permission = MUTATIONS[operation]
    source_id = await source_for(operation)
    before = await catalog_state()
    result = await graphql(document % OUTCOME, {"id": source_id}, token=await token_of(role))
    outcome = result["data"][operation]
    if permission in GRANTED[role]:
        assert outcome["__typename"] == ("DeletedSource" if operation == "deleteSource" else "Source"), result
        assert await catalog_state() != before
    else:
        assert outcome == {
            "__typename": "OperationInfo",
            "messages": [
                {
                    "kind": "PERMISSION",
                    "field": None,
                    "code": "permission_denied",
                    "message": f"Missing permission {permission}.",
                }
            ],
        }
        assert await catalog_state() == before


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("operation", SUBSCRIPTIONS)
@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_subscription(protocol: str, operation: str, role: str) -> None:
    variables = {"id": await source_for(operation)}
    if role == "anonymous":
        # Nobody signed in may not even open the socket (tests/test_auth.py has the details).
        ws = GraphQLWebSocket(protocol, token=None)
        await ws.open()
        await ws.send({"type": "connection_init", "payload": {}})
        assert (await ws.closed_with())[0] == 4403
        await ws.close()
        return
    async with GraphQLWebSocket(protocol, token=await token_of(role)) as ws:
        subscription = await ws.subscribe(SUBSCRIPTIONS[operation], variables)
        if operation == "sourceEvents":  # sends nothing until a change: make one once it listens
            await until_listening(1)
            await sync_to_async(services.source_update)(actor="setup", source_id=variables["id"], data={"panel": "Q"})
        expected = {
            "sourceEvents": {"sourceEvents": {"kind": "UPDATED"}},
            "sources": {"sources": [{"id": variables["id"]}]},
            "source": {"source": {"id": variables["id"]}},
            "dataLibrary": {"dataLibrary": {"windowDays": 30}},
        }
        assert await ws.next_data(subscription) == expected[operation]


@pytest.mark.parametrize("operation", SUBSCRIPTIONS)
@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_signed_in_user_without_the_permission_gets_an_error_naming_it_and_no_data(
    protocol: str, operation: str
) -> None:
    variables = {"id": await source_for(operation)}
    async with GraphQLWebSocket(protocol, token=await sync_to_async(issue_token)(None)) as ws:
        subscription = await ws.subscribe(SUBSCRIPTIONS[operation], variables)
        payload = await ws.next_payload(subscription)
        assert payload == {
            "data": None,
            "errors": [
                {
                    "message": "Missing permission catalog.view_source.",
                    "extensions": {"code": "permission_denied", "permission": "catalog.view_source"},
                }
            ],
        }


@pytest.mark.parametrize(
    ("who", "permission"),
    [
        (who, permission)
        for who in ["no group", "reader", "editor", "admin", "own permission", "superuser", "inactive", "inactive su"]
        for permission in ["catalog.view_source", "catalog.delete_source"]
    ],
)
def test_holds_now_answers_as_django_has_perm_does(who: str, permission: str) -> None:
    from django.contrib.auth.models import AnonymousUser, Permission

    from graph.permissions import holds_now
    from tests.support.identities import make_user

    user = make_user(who if who in {"reader", "editor", "admin"} else None)
    if who == "own permission":
        user.user_permissions.add(Permission.objects.get(codename=permission.split(".")[1]))
    user.is_superuser = who in {"superuser", "inactive su"}
    user.is_active = not who.startswith("inactive")
    user.save()
    fresh = type(user).objects.get(pk=user.pk)
    expected = fresh.has_perm(permission)
    assert holds_now(user, permission) is expected
    assert holds_now(AnonymousUser(), permission) is False
    if who in {"own permission", "superuser", "admin"}:
        assert expected is True  # the cases cover both answers
