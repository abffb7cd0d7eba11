"""The three ways a change reaches the catalog: GraphQL, the admin, and plain ORM code.

Each writer makes the same changes, so one subscription test can run over all three.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from asgiref.sync import sync_to_async
from django.test import Client

from catalog.models import Source, SourceStatus
from catalog.services import PATCHABLE_FIELDS
from tests.support.http import graphql
from tests.support.identities import atoken

RESULT = "__typename ... on OperationInfo { messages { code message } }"
TRANSITION_MUTATIONS = {
    "activate": "activateSource",
    "deactivate": "deactivateSource",
    "reactivate": "reactivateSource",
}


class GraphQLWriter:
    """Sends the mutations with the API token of a user in the admin role."""

    actor = "graphql-writer"

    def __init__(self) -> None:
        self._secret: str | None = None

    async def token(self) -> str:
        if self._secret is None:
            self._secret = await atoken("admin", username=self.actor)
        return self._secret

    async def add(self, **fields: Any) -> str:
        result = await graphql(
            "mutation($input: SourceInput!) { addSource(input: $input) { ... on Source { id } %s } }" % RESULT,
            {
                "input": {
                    "createdBy": "writer",
                    "country": "France",
                    "dataVendor": "IQVIA",
                    "panel": "Retail",
                    "dataType": "Sales",
                }
                | _json(fields)
            },
            token=await self.token(),
        )
        return result["data"]["addSource"]["id"]

    async def update(self, source_id: str, **fields: Any) -> None:
        result = await graphql(
            "mutation($id: ID!, $input: SourcePatch!) { updateSource(id: $id, input: $input) { %s } }" % RESULT,
            {"id": source_id, "input": _json(fields)},
            token=await self.token(),
        )
        assert result["data"]["updateSource"]["__typename"] == "Source", result

    async def transition(self, name: str, source_id: str) -> None:
        mutation = TRANSITION_MUTATIONS[name]
        result = await graphql(
            "mutation($id: ID!) { %s(id: $id) { %s } }" % (mutation, RESULT),
            {"id": source_id},
            token=await self.token(),
        )
        assert result["data"][mutation]["__typename"] == "Source", result

    async def delete(self, source_id: str) -> None:
        result = await graphql(
            "mutation($id: ID!) { deleteSource(id: $id) { %s } }" % RESULT, {"id": source_id}, token=await self.token()
        )
        assert result["data"]["deleteSource"]["__typename"] == "DeletedSource", result


class AdminWriter:
    """Drives the admin's forms and actions as a signed-in staff user would."""

    actor = "admin"

    def __init__(self) -> None:
        self.client = Client()
        self.client.force_login(admin_user())

    @sync_to_async
    def add(self, **fields: Any) -> str:
        form = _admin_form(
            {
                "created_by": "writer",
                "country": "France",
                "data_vendor": "IQVIA",
                "panel": "Retail",
                "data_type": "Sales",
                "status": SourceStatus.ACTIVE,
            }
            | _snake(fields)
        )
        response = self.client.post("/admin/catalog/source/add/", form)
        assert response.status_code == 302, response.content
        return str(Source.objects.filter(created_by=form["created_by"]).latest("created_at").pk)

    @sync_to_async
    def update(self, source_id: str, **fields: Any) -> None:
        source = Source.objects.get(pk=source_id)
        current = {name: getattr(source, name) for name in _ADMIN_FIELDS}
        response = self.client.post(f"/admin/catalog/source/{source_id}/change/", _admin_form(current | _snake(fields)))
        assert response.status_code == 302, response.content

    @sync_to_async
    def transition(self, name: str, source_id: str) -> None:
        response = self.client.post(
            "/admin/catalog/source/", {"action": f"{name}_sources", "_selected_action": [source_id]}
        )
        assert response.status_code == 302, response.content

    @sync_to_async
    def delete(self, source_id: str) -> None:
        response = self.client.post(f"/admin/catalog/source/{source_id}/delete/", {"post": "yes"})
        assert response.status_code == 302, response.content


class OrmWriter:
    """Plain ORM code, as a shell session or a job would write it."""

    actor = None

    @sync_to_async
    def add(self, **fields: Any) -> str:
        values = {
            "created_by": "writer",
            "country": "France",
            "data_vendor": "IQVIA",
            "panel": "Retail",
            "data_type": "Sales",
        } | _snake(fields)
        return str(Source.objects.create(**values).pk)

    @sync_to_async
    def update(self, source_id: str, **fields: Any) -> None:
        source = Source.objects.get(pk=source_id)
        for name, value in _snake(fields).items():
            setattr(source, name, value)
        source.save()

    @sync_to_async
    def transition(self, name: str, source_id: str) -> None:
        source = Source.objects.get(pk=source_id)
        source.status = SourceStatus.INACTIVE if name == "deactivate" else SourceStatus.ACTIVE
        source.save()

    @sync_to_async
    def delete(self, source_id: str) -> None:
        Source.objects.get(pk=source_id).delete()


WRITERS = {"graphql": GraphQLWriter, "admin": AdminWriter, "orm": OrmWriter}


async def make_writer(name: str) -> GraphQLWriter | AdminWriter | OrmWriter:
    """Return a writer; built in a thread because the admin's sign-in touches the database."""
    return await sync_to_async(WRITERS[name])()


# The admin change form posts every editable field: the patchable ones and who created the source.
_ADMIN_FIELDS = ("created_by", *sorted(PATCHABLE_FIELDS))


def admin_user() -> Any:
    from django.contrib.auth import get_user_model

    user, _ = get_user_model().objects.get_or_create(
        username="admin", defaults={"is_staff": True, "is_superuser": True}
    )
    return user


def _snake(fields: dict[str, Any]) -> dict[str, Any]:
    names = {
        "dataVendor": "data_vendor",
        "dataType": "data_type",
        "currentUpdate": "current_update",
        "nextUpdate": "next_update",
        "panelGroup": "panel_group",
        "createdBy": "created_by",
    }
    return {names.get(name, name): value for name, value in fields.items()}


def _admin_form(values: dict[str, Any]) -> dict[str, str]:
    defaults = {"panel_group": "DKM", "granularity": "National", "scope_of_subscription": ""}
    return {
        name: value.isoformat() if isinstance(value, dt.date) else ("" if value is None else str(value))
        for name, value in (defaults | values).items()
    }


def _json(fields: dict[str, Any]) -> dict[str, Any]:
    return {name: value.isoformat() if isinstance(value, dt.date) else value for name, value in fields.items()}
