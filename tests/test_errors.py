"""Every error a client can act on: its exact code, and that nothing changed."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.core.exceptions import ValidationError
from django.test import AsyncClient

from catalog.models import Source, SourceStatus
from tests.support.http import graphql
from tests.support.sources import catalog_state
from tests.support.websocket import LEGACY_WS, GraphQLWebSocket

pytestmark = pytest.mark.django_db(transaction=True)

VALID_INPUT = {"country": "France", "dataVendor": "IQVIA", "panel": "Retail", "dataType": "Sales", "createdBy": "me"}
ERRORS = "__typename ... on OperationInfo { messages { kind field code message } }"
ADD = "mutation($input: SourceInput!) { addSource(input: $input) { %s } }" % ERRORS
UPDATE = (
    "mutation($id: ID!, $input: SourcePatch!, $v: Int) {"
    " updateSource(id: $id, input: $input, expectedVersion: $v) { %s } }" % ERRORS
)


@sync_to_async
def existing_source(**overrides: Any) -> Source:
    from catalog import services

    values = {"country": "France", "data_vendor": "IQVIA", "panel": "Retail", "data_type": "Sales"}
    return services.source_create(actor="setup", created_by="setup", **(values | overrides))


def messages(result: dict[str, Any], field: str) -> list[tuple[str, str | None, str]]:
    payload = result["data"][field]
    assert payload["__typename"] == "OperationInfo", result
    return [(m["kind"], m["field"], m["code"]) for m in payload["messages"]]


async def test_add_without_created_by_and_nobody_signed_in_is_required() -> None:
    # Only code outside a request (a shell, a job) writes with nobody signed in: GraphQL
    # refuses anonymous writes before they get here.
    from catalog import services

    before = await catalog_state()
    with pytest.raises(ValidationError) as raised:
        await sync_to_async(services.source_create)(
            actor=None, country="France", data_vendor="IQVIA", panel="Retail", data_type="Sales"
        )
    assert [(field, e.code) for field, errors in raised.value.error_dict.items() for e in errors] == [
        ("created_by", "required")
    ]
    assert await catalog_state() == before


async def test_add_with_a_blank_created_by_is_blank() -> None:
    before = await catalog_state()
    result = await graphql(ADD, {"input": VALID_INPUT | {"createdBy": "  "}})
    assert messages(result, "addSource") == [("VALIDATION", "createdBy", "blank")]
    assert await catalog_state() == before


@pytest.mark.parametrize("field", ["country", "dataVendor", "panel", "dataType", "createdBy"])
async def test_add_with_a_nul_character_is_invalid(field: str) -> None:
    before = await catalog_state()
    result = await graphql(ADD, {"input": VALID_INPUT | {field: "Fr\u0000ance"}})
    assert messages(result, "addSource") == [("VALIDATION", field, "invalid")]
    assert await catalog_state() == before


async def test_a_filter_with_a_nul_character_is_an_invalid_request() -> None:
    result = await graphql("query($c: String) { sources(filters: {OR: {country: $c}}) { id } }", {"c": "a\u0000"})
    assert result["errors"][0]["message"] == "filters: text may not contain NUL characters."
    assert result["errors"][0]["extensions"] == {"code": "invalid"}


@pytest.mark.parametrize("field", ["country", "dataVendor", "panel", "dataType"])
async def test_add_with_a_blank_required_field_is_blank(field: str) -> None:
    before = await catalog_state()
    result = await graphql(ADD, {"input": VALID_INPUT | {field: "   "}})
    assert messages(result, "addSource") == [("VALIDATION", field, "blank")]
    assert await catalog_state() == before


async def test_add_with_a_text_over_255_characters_is_max_length() -> None:
    before = await catalog_state()
    result = await graphql(ADD, {"input": VALID_INPUT | {"panel": "x" * 256}})
    assert messages(result, "addSource") == [("VALIDATION", "panel", "max_length")]
    assert await catalog_state() == before


async def test_add_with_exactly_255_characters_is_accepted() -> None:
    result = await graphql(ADD, {"input": VALID_INPUT | {"panel": "x" * 255}})
    assert result["data"]["addSource"]["__typename"] == "Source"


@pytest.mark.parametrize("bad_date", ["2026-02-30", "21/11/2026", "tomorrow", ""])
async def test_add_with_a_bad_date_is_invalid(bad_date: str) -> None:
    before = await catalog_state()
    result = await graphql(ADD, {"input": VALID_INPUT | {"nextUpdate": bad_date}})
    assert messages(result, "addSource") == [("VALIDATION", "nextUpdate", "invalid")]
    assert await catalog_state() == before


async def test_add_with_a_bad_status_is_an_invalid_request() -> None:
    before = await catalog_state()
    result = await graphql(ADD, {"input": VALID_INPUT | {"status": "PAUSED"}})
    assert "data" not in result  # variables that do not fit: a request error, the mutation never ran
    assert [error["extensions"]["code"] for error in result["errors"]] == ["invalid"]
    assert "PAUSED" in result["errors"][0]["message"]
    assert await catalog_state() == before


async def test_several_bad_fields_are_all_reported() -> None:
    result = await graphql(ADD, {"input": VALID_INPUT | {"country": "", "panel": "x" * 300, "endDate": "nope"}})
    assert sorted(messages(result, "addSource")) == [
        ("VALIDATION", "country", "blank"),
        ("VALIDATION", "endDate", "invalid"),
        ("VALIDATION", "panel", "max_length"),
    ]


@pytest.mark.parametrize("field", ["country", "dataVendor", "panel", "dataType", "panelGroup", "granularity"])
@pytest.mark.parametrize("value", [None, "", "  "])
async def test_update_with_null_or_blank_required_text_is_blank(field: str, value: str | None) -> None:
    source = await existing_source()
    before = await catalog_state()
    result = await graphql(UPDATE, {"id": str(source.pk), "input": {field: value}})
    assert messages(result, "updateSource") == [("VALIDATION", field, "blank")]
    assert await catalog_state() == before


async def test_update_with_a_bad_date_is_invalid() -> None:
    source = await existing_source()
    before = await catalog_state()
    result = await graphql(UPDATE, {"id": str(source.pk), "input": {"currentUpdate": "2026-13-01"}})
    assert messages(result, "updateSource") == [("VALIDATION", "currentUpdate", "invalid")]
    assert await catalog_state() == before


async def test_update_with_a_stale_expected_version_is_version_conflict() -> None:
    source = await existing_source()
    await graphql(UPDATE, {"id": str(source.pk), "input": {"country": "Spain"}})
    before = await catalog_state()
    result = await graphql(UPDATE, {"id": str(source.pk), "input": {"country": "Italy"}, "v": 1})
    assert messages(result, "updateSource") == [("VALIDATION", "expectedVersion", "version_conflict")]
    assert await catalog_state() == before


async def test_update_with_the_current_expected_version_succeeds() -> None:
    source = await existing_source()
    result = await graphql(
        'mutation($id: ID!) { updateSource(id: $id, input: {country: "Italy"}, expectedVersion: 1) '
        "{ ... on Source { country version } } }",
        {"id": str(source.pk)},
    )
    assert result["data"]["updateSource"] == {"country": "Italy", "version": 2}


MUTATIONS_BY_ID = {
    "updateSource": 'updateSource(id: $id, input: {country: "Spain"})',
    "activateSource": "activateSource(id: $id)",
    "deactivateSource": "deactivateSource(id: $id)",
    "reactivateSource": "reactivateSource(id: $id)",
    "deleteSource": "deleteSource(id: $id)",
}


@pytest.mark.parametrize("mutation", MUTATIONS_BY_ID)
@pytest.mark.parametrize("source_id", ["0b6f4d0e-5d1c-4c4e-9a59-2b1f6a7f9e11", "not-a-uuid", "", "1" * 5000])
async def test_unknown_or_malformed_id_is_not_found(mutation: str, source_id: str) -> None:
    await existing_source()
    before = await catalog_state()
    result = await graphql("mutation($id: ID!) { %s { %s } }" % (MUTATIONS_BY_ID[mutation], ERRORS), {"id": source_id})
    assert messages(result, mutation) == [("VALIDATION", "id", "not_found")]
    assert await catalog_state() == before


@pytest.mark.parametrize("source_id", ["0b6f4d0e-5d1c-4c4e-9a59-2b1f6a7f9e11", "not-a-uuid"])
async def test_source_query_with_unknown_or_malformed_id_is_null(source_id: str) -> None:
    await existing_source()
    assert await graphql("query($id: ID!) { source(id: $id) { id } }", {"id": source_id}) == {"data": {"source": None}}


# (mutation, the status the source is in, whether it was ever active, the message's status)
REFUSED_TRANSITIONS = [
    ("activateSource", SourceStatus.ACTIVE, True, "ACTIVE"),
    ("activateSource", SourceStatus.INACTIVE, True, "INACTIVE"),  # was active: reactivate instead
    ("deactivateSource", SourceStatus.INACTIVE, False, "INACTIVE"),
    ("deactivateSource", SourceStatus.INACTIVE, True, "INACTIVE"),
    ("reactivateSource", SourceStatus.ACTIVE, True, "ACTIVE"),
    ("reactivateSource", SourceStatus.INACTIVE, False, "INACTIVE"),  # never active: activate instead
]


@pytest.mark.parametrize(("mutation", "status", "was_active", "named"), REFUSED_TRANSITIONS)
async def test_a_transition_from_the_wrong_state_is_invalid_transition(
    mutation: str, status: str, was_active: bool, named: str
) -> None:
    source = await existing_source(status=SourceStatus.ACTIVE if was_active else SourceStatus.INACTIVE)
    if was_active and status == SourceStatus.INACTIVE:
        await graphql("mutation($id: ID!) { deactivateSource(id: $id) { __typename } }", {"id": str(source.pk)})
    before = await catalog_state()
    result = await graphql("mutation($id: ID!) { %s(id: $id) { %s } }" % (mutation, ERRORS), {"id": str(source.pk)})
    assert messages(result, mutation) == [("VALIDATION", "id", "invalid_transition")]
    assert named in result["data"][mutation]["messages"][0]["message"]
    assert await catalog_state() == before


@pytest.mark.parametrize(
    ("pagination", "message"),
    [
        ({"offset": -1}, "pagination.offset must be 0 or more, not -1."),
        ({"limit": 0}, "pagination.limit must be between 1 and 1000, not 0."),
        ({"limit": 1001}, "pagination.limit must be between 1 and 1000, not 1001."),
    ],
)
async def test_a_page_out_of_range_is_invalid(pagination: dict[str, int], message: str) -> None:
    result = await graphql("query($p: OffsetPaginationInput) { sources(pagination: $p) { id } }", {"p": pagination})
    assert result["errors"][0]["message"] == message
    assert result["errors"][0]["extensions"] == {"code": "invalid"}


async def test_a_bad_filter_enum_is_an_invalid_request() -> None:
    result = await graphql("{ sources(filters: {status: PAUSED}) { id } }")
    assert "data" not in result  # a request error: the operation never ran
    assert [error["extensions"]["code"] for error in result["errors"]] == ["invalid"]


async def test_a_syntax_error_is_an_invalid_request() -> None:
    result = await graphql("{ sources { id ")
    assert [error["extensions"]["code"] for error in result["errors"]] == ["invalid"]


async def test_a_subscription_over_http_is_refused_with_400() -> None:
    response = await AsyncClient().post(
        "/graphql", {"query": "subscription { dataLibrary { windowDays } }"}, content_type="application/json"
    )
    assert (response.status_code, response.json()) == (
        400,
        {"errors": [{"message": "subscriptions are not allowed when using POST", "extensions": {"code": "invalid"}}]},
    )


async def test_a_query_and_a_mutation_run_over_the_legacy_subprotocol_too() -> None:
    async with GraphQLWebSocket(LEGACY_WS) as ws:
        operation = await ws.subscribe("{ sources(pagination: {limit: 1}) { id } }")
        assert await ws.receive() == {"type": "data", "id": operation, "payload": {"data": {"sources": []}}}
        assert await ws.receive() == {"type": "complete", "id": operation}
        added = await ws.subscribe(
            'mutation { addSource(input: {country: "France", dataVendor: "V", panel: "P", dataType: "T"}) '
            "{ ... on Source { country version } } }"
        )
        assert await ws.receive() == {
            "type": "data",
            "id": added,
            "payload": {"data": {"addSource": {"country": "France", "version": 1}}},
        }
        assert await ws.receive() == {"type": "complete", "id": added}
